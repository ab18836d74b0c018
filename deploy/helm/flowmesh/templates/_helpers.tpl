{{/* Names, labels and the values several templates share. */}}

{{- define "flowmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; pool Deployments append "-worker-POOL" (pool names are at
most 32 characters), so it is kept to 20. */}}
{{- define "flowmesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 20 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 20 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 20 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flowmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "flowmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flowmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowmesh.controlName" -}}
{{ include "flowmesh.fullname" . }}-control
{{- end }}

{{- define "flowmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flowmesh.secretName" -}}
{{- default (printf "%s-env" (include "flowmesh.fullname" .)) .Values.existingSecret }}
{{- end }}

{{- define "flowmesh.tokenSecretName" -}}
{{- default (printf "%s-autoscale" (include "flowmesh.fullname" .)) .Values.autoscaling.existingTokenSecret }}
{{- end }}

{{- define "flowmesh.tokenSecretKey" -}}
{{- if .Values.autoscaling.existingTokenSecret }}{{ .Values.autoscaling.existingTokenSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "flowmesh.hasToken" -}}
{{- if or .Values.autoscaling.token .Values.autoscaling.existingTokenSecret }}true{{ end }}
{{- end }}

{{/* The Redis URL: the one given, else the in-chart Redis's Service. */}}
{{- define "flowmesh.redisUrl" -}}
{{- if .Values.redis.url }}
{{- .Values.redis.url }}
{{- else if .Values.redis.internal.enabled }}
{{- printf "redis://%s-redis:6379/0" (include "flowmesh.fullname" .) }}
{{- else }}
{{- fail "set redis.url to your Redis (redis://host:6379/0), or redis.internal.enabled=true for a trial Redis inside the release" }}
{{- end }}
{{- end }}

{{/* GET /v1/autoscale on the control plane's Service, as KEDA's operator reaches it. */}}
{{- define "flowmesh.autoscaleUrl" -}}
{{- printf "http://%s.%s.svc.%s:%d/v1/autoscale" (include "flowmesh.controlName" .) .Release.Namespace .Values.autoscaling.clusterDomain (int .Values.controlPlane.service.port) }}
{{- end }}

{{- define "flowmesh.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag }}
{{- printf "%s:%s" .image.repository (default $tag .image.tag) }}
{{- end }}

{{/* The fields of a pool that FlowMesh's settings read (docs/autoscaling.md). */}}
{{- define "flowmesh.poolSettings" -}}
{{- $out := dict }}
{{- range $name, $pool := .Values.pools }}
{{- $_ := set $out $name (pick $pool "accelerator" "usd_per_hour" "watts" "boot_s" "min_replicas" "max_replicas" "market") }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- define "flowmesh.isGpuPool" -}}
{{- if ne (lower (default "cpu" .accelerator)) "cpu" }}true{{ end }}
{{- end }}

{{/* Environment every FlowMesh container reads: the ConfigMap and the Secret. */}}
{{- define "flowmesh.envFrom" -}}
- configMapRef:
    name: {{ include "flowmesh.fullname" . }}-settings
- secretRef:
    name: {{ include "flowmesh.secretName" . }}
{{- end }}

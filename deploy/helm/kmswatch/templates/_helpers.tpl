{{- define "kmswatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kmswatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "kmswatch.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kmswatch.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kmswatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kmswatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kmswatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmswatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kmswatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kmswatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kmswatch.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The components to deploy: name, run mode and settings, per layout. */}}
{{- define "kmswatch.components" -}}
{{- if eq .Values.layout "single" -}}
- { component: all, mode: all, replicas: 1 }
{{- else if eq .Values.layout "two-tier" -}}
- { component: ingest, mode: ingest, replicas: {{ .Values.ingest.replicas }} }
- { component: detect, mode: detect, replicas: {{ .Values.detect.replicas }} }
{{- else -}}
{{- fail (printf "layout must be single or two-tier, not %q" .Values.layout) -}}
{{- end -}}
{{- end -}}

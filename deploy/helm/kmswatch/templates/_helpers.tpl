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

{{/* Where the metrics token and the TLS pair are mounted in the container. */}}
{{- define "kmswatch.metricsTokenDir" -}}/var/run/kmswatch/metrics-token{{- end -}}
{{- define "kmswatch.metricsTlsDir" -}}/var/run/kmswatch/metrics-tls{{- end -}}

{{/* The Secret holding the metrics token. */}}
{{- define "kmswatch.metricsTokenSecret" -}}
{{- default (printf "%s-metrics-token" (include "kmswatch.fullname" .)) .Values.metrics.auth.existingSecret -}}
{{- end -}}

{{/* HTTP or HTTPS, for the probes and the scrape annotation. */}}
{{- define "kmswatch.metricsScheme" -}}
{{- ternary "HTTPS" "HTTP" (not (empty .Values.metrics.tls.existingSecret)) -}}
{{- end -}}

{{/* The kmswatch config: .Values.config plus the server section from .Values.metrics. */}}
{{- define "kmswatch.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := dict "listen" (printf "0.0.0.0:%v" .Values.metrics.port) -}}
{{- if .Values.metrics.auth.enabled -}}
{{- $_ := set $server "auth" (dict "bearer_token_file" (printf "%s/token" (include "kmswatch.metricsTokenDir" .))) -}}
{{- end -}}
{{- if .Values.metrics.tls.existingSecret -}}
{{- $dir := include "kmswatch.metricsTlsDir" . -}}
{{- $_ := set $server "tls" (dict "cert_path" (printf "%s/tls.crt" $dir) "key_path" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- $_ := set $cfg "server" $server -}}
{{- toYaml $cfg -}}
{{- end -}}

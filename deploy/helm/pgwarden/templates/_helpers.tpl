{{- define "pgwarden.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgwarden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pgwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "pgwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "pgwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgwarden.secretName" -}}
{{- default (include "pgwarden.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The configuration file: everything but the secrets. */}}
{{- define "pgwarden.config" -}}
listen: 0.0.0.0:6432
upstream:
  url: {{ required "upstream.url is required" .Values.upstream.url | quote }}
  tls_mode: {{ .Values.upstream.tlsMode | quote }}
  {{- if .Values.upstream.caSecret }}
  ca_file: /etc/pgwarden/upstream-ca/ca.crt
  {{- end }}
  {{- with .Values.upstream.serverName }}
  server_name: {{ . | quote }}
  {{- end }}
{{- if .Values.clientTLS.secret }}
client_tls:
  cert_file: /etc/pgwarden/tls/tls.crt
  key_file: /etc/pgwarden/tls/tls.key
{{- end }}
policy: /etc/pgwarden/policy/policy.yaml
{{- with .Values.catalog.url }}
catalog:
  url: {{ . | quote }}
{{- end }}
audit:
  {{- if .Values.audit.dir }}
  dir: /var/lib/pgwarden/audit
  {{- end }}
  {{- with .Values.audit.url }}
  url: {{ . | quote }}
  {{- end }}
  fail_open: {{ .Values.audit.failOpen }}
state_dir: /var/lib/pgwarden/state
{{- with .Values.state.url }}
state_url: {{ . | quote }}
{{- end }}
share_state: {{ gt (int .Values.replicaCount) 1 }}
admin:
  listen: 0.0.0.0:7070
limits:
  max_connections: {{ .Values.limits.maxConnections }}
  shutdown_timeout: {{ .Values.limits.shutdownTimeout }}
log:
  level: {{ .Values.log.level }}
  format: {{ .Values.log.format }}
{{- with .Values.notify.webhookURL }}
notify:
  webhook:
    url: {{ . | quote }}
{{- end }}
{{- end -}}

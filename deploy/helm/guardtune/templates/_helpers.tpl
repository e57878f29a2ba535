{{- define "guardtune.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "guardtune.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "guardtune.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "guardtune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "guardtune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guardtune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardtune.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-keys" (include "guardtune.fullname" .)) -}}
{{- end -}}

{{- define "guardtune.railsConfigMap" -}}
{{- .Values.rails.existingConfigMap | default (printf "%s-rails" (include "guardtune.fullname" .)) -}}
{{- end -}}

{{/* Settings every guard container shares: secrets by reference, the rest as plain values. */}}
{{- define "guardtune.env" -}}
- name: GUARD_HOME
  value: /data
- name: GUARD_DB_URL
  valueFrom: {secretKeyRef: {name: {{ include "guardtune.secretName" . }}, key: db-url}}
- name: GUARD_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ include "guardtune.secretName" . }}, key: redis-url, optional: true}}
{{- end -}}

{{- define "guardtune.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

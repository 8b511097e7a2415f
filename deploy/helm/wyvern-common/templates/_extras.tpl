{{/* ServiceAccount, ServiceMonitor (Prometheus operator) and NOTES. */}}
{{- define "wyvern-common.serviceaccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "wyvern-common.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}

{{- define "wyvern-common.servicemonitor" -}}
{{- if .Values.serviceMonitor.enabled -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "wyvern-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
    {{- with .Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "wyvern-common.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .Release.Namespace | quote }}]
  endpoints:
    - port: ops
      path: /metrics
      interval: {{ .Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.serviceMonitor.scrapeTimeout }}
{{- end -}}
{{- end -}}

{{- define "wyvern-common.notes" -}}
{{- $name := include "wyvern-common.fullname" . -}}
wy-{{ include "wyvern-common.daemon" . }} is installed as {{ .Values.workload.kind }}/{{ $name }} in namespace {{ .Release.Namespace }}.

Ports (Service {{ $name }}):
{{- if include "wyvern-common.hasClientPort" . }}
  {{ .Values.ports.client.name }}  {{ .Values.ports.client.port }}  client API
{{- end }}
  grpc  {{ .Values.ports.grpc }}  internal gRPC (grpc.health.v1 included)
  ops   {{ .Values.ports.ops }}  GET /healthz, /readyz, /metrics

Wait until ready:
  kubectl -n {{ .Release.Namespace }} rollout status {{ .Values.workload.kind | lower }}/{{ $name }}

Check readiness by hand:
  kubectl -n {{ .Release.Namespace }} port-forward svc/{{ $name }} {{ .Values.ports.ops }}:{{ .Values.ports.ops }} &
  curl -s localhost:{{ .Values.ports.ops }}/readyz

Secrets this release reads (create them before installing):
{{- if .Values.postgresql.enabled }}
  {{ .Values.postgresql.existingSecret }} (key {{ .Values.postgresql.secretKey }}): WY_PG_URL
{{- end }}
{{- if .Values.redis.enabled }}
  {{ .Values.redis.existingSecret }} (key {{ .Values.redis.secretKey }}): WY_REDIS_URL
{{- end }}
{{- if include "wyvern-common.signingKeysOn" . }}
  {{ .Values.signingKeys.existingSecret }}: signing keys <kid>.pem, mounted at {{ .Values.signingKeys.mountPath }}; {{ .Values.signingKeys.kid }}.pem signs
{{- with .Values.steam }}{{ if .existingSecret }}
  {{ .existingSecret }} (key {{ .secretKey }}): WY_AUTH_STEAM_WEB_API_KEY
{{- end }}{{ end }}
{{- with .Values.customLogin }}{{ if .existingSecret }}
  {{ .existingSecret }} (key {{ .secretKey }}): WY_AUTH_CUSTOM_SECRET
{{- end }}{{ end }}
{{- end }}
{{- if eq (include "wyvern-common.daemon" .) "lobby" }}

Tokens are verified with the keys of wy-auth at {{ .Values.tokens.authGrpc }} (gRPC).
{{- end }}
{{- if not .Values.autoscaling.enabled }}

Autoscaling is off: {{ .Values.replicaCount }} replica(s).
{{- else }}

Autoscaling: {{ .Values.autoscaling.minReplicas }}..{{ .Values.autoscaling.maxReplicas }} replicas at {{ .Values.autoscaling.targetCPUUtilizationPercentage }}% CPU.
{{- end }}
{{- end -}}

{{/*
ConfigMap of the daemon's non-secret WY_* variables. Only names the daemon
lists in `wy-<svc> --help --json` belong here (tests/deploy checks it);
secret variables (WY_PG_URL, WY_REDIS_URL) come from Secrets, never here.
*/}}
{{- define "wyvern-common.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "wyvern-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
data:
  {{- include "wyvern-common.configData" . | trim | nindent 2 }}
{{- end -}}

{{/* The ConfigMap's data, sorted; extraConfig overrides the built-in entries. */}}
{{- define "wyvern-common.configData" -}}
{{- $p := include "wyvern-common.envPrefix" . -}}
{{- $d := dict "WY_LOG_LEVEL" (toString .Values.logLevel) "WY_BIND_HOST" "0.0.0.0" -}}
{{- $_ := set $d "WY_KAFKA_BROKERS" (required "kafka.brokers is required (host:port[,host:port])" .Values.kafka.brokers | toString) -}}
{{- $_ = set $d (printf "%sOPS_PORT" $p) (toString .Values.ports.ops) -}}
{{- $_ = set $d (printf "%sGRPC_PORT" $p) (toString .Values.ports.grpc) -}}
{{- $_ = set $d (printf "%sDRAIN_TIMEOUT" $p) (printf "%vms" .Values.drain.timeoutMs) -}}
{{- if and (include "wyvern-common.hasClientPort" .) .Values.ports.client.env -}}
{{- $_ = set $d .Values.ports.client.env (toString .Values.ports.client.port) -}}
{{- end -}}
{{- if .Values.postgresql.enabled -}}
{{- $_ = set $d "WY_PG_POOL_SIZE" (toString .Values.postgresql.poolSize) -}}
{{- end -}}
{{- range $k, $v := .Values.extraConfig -}}
{{- $_ = set $d $k (toString $v) -}}
{{- end -}}
{{- range $k, $v := $d }}
{{ $k }}: {{ $v | quote }}
{{- end -}}
{{- end -}}

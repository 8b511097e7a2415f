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
{{- include "wyvern-common.daemonConfig" (list . $d) -}}
{{- range $k, $v := .Values.extraConfig -}}
{{- $_ = set $d $k (toString $v) -}}
{{- end -}}
{{- range $k, $v := $d }}
{{ $k }}: {{ $v | quote }}
{{- end -}}
{{- end -}}

{{/*
Daemon-specific settings into the ConfigMap data dict (second list item).
Empty values are left out: the daemon's own default applies.
*/}}
{{- define "wyvern-common.daemonConfig" -}}
{{- $ := index . 0 -}}
{{- $d := index . 1 -}}
{{- $svc := include "wyvern-common.daemon" $ -}}
{{- $set := dict -}}
{{- if eq $svc "auth" -}}
{{- with $.Values.tokens -}}
{{- $_ := set $set "WY_AUTH_ISSUER" .issuer -}}
{{- $_ = set $set "WY_AUTH_AUDIENCE" .audience -}}
{{- end -}}
{{- with $.Values.steam -}}
{{- if and .appId (not .existingSecret) -}}
{{- fail "steam.appId is set but steam.existingSecret is empty: wy-auth needs the Steam Web API key (WY_AUTH_STEAM_WEB_API_KEY) from a Secret" -}}
{{- end -}}
{{- if and .existingSecret (not .appId) -}}
{{- fail "steam.existingSecret is set but steam.appId is 0: Steam login stays off without the app id" -}}
{{- end -}}
{{- if .appId -}}
{{- $_ := set $set "WY_AUTH_STEAM_APP_ID" (toString (int64 .appId)) -}}
{{- $_ = set $set "WY_AUTH_STEAM_API_URL" .apiUrl -}}
{{- $_ = set $set "WY_AUTH_STEAM_TIMEOUT" .timeout -}}
{{- end -}}
{{- end -}}
{{- with $.Values.oidc -}}
{{- if .issuer -}}
{{- if not (and .audience .jwksUrl) -}}
{{- fail "oidc.issuer is set: oidc.audience (your client id at the issuer) and oidc.jwksUrl are required too" -}}
{{- end -}}
{{- $_ := set $set "WY_AUTH_OIDC_ISSUER" .issuer -}}
{{- $_ = set $set "WY_AUTH_OIDC_AUDIENCE" .audience -}}
{{- $_ = set $set "WY_AUTH_OIDC_JWKS_URL" .jwksUrl -}}
{{- $_ = set $set "WY_AUTH_OIDC_ALGS" .algs -}}
{{- end -}}
{{- end -}}
{{- else if eq $svc "lobby" -}}
{{- with $.Values.tokens -}}
{{- $_ := set $set "WY_LOBBY_AUTH_GRPC" (required "tokens.authGrpc is required: wy-lobby verifies access tokens with auth's keys (host:port of auth's gRPC Service, e.g. wyvern-auth:9201)" .authGrpc) -}}
{{- $_ = set $set "WY_LOBBY_TOKEN_ISSUER" .issuer -}}
{{- $_ = set $set "WY_LOBBY_TOKEN_AUDIENCE" .audience -}}
{{- end -}}
{{- with $.Values.services -}}
{{- $_ := set $set "WY_LOBBY_ACTOR_GRPC" .actorGrpc -}}
{{- $_ = set $set "WY_LOBBY_WORLD_GRPC" .worldGrpc -}}
{{- $_ = set $set "WY_LOBBY_CHAT_GRPC" .chatGrpc -}}
{{- end -}}
{{- with $.Values.sessions -}}
{{- $_ := set $set "WY_LOBBY_DUPLICATE_POLICY" .duplicatePolicy -}}
{{- $_ = set $set "WY_LOBBY_SESSION_TTL" .ttl -}}
{{- $_ = set $set "WY_LOBBY_FENCE_TIME" .fenceTime -}}
{{- if .maxConnections -}}
{{- $_ = set $set "WY_LOBBY_MAX_CONNECTIONS" (toString (int64 .maxConnections)) -}}
{{- end -}}
{{- end -}}
{{- else if eq $svc "game" -}}
{{- with $.Values.services -}}
{{- $_ := set $set "WY_GAME_WORLD_GRPC" .worldGrpc -}}
{{- $_ = set $set "WY_GAME_CHAT_GRPC" .chatGrpc -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := $set -}}
{{- if $v -}}
{{- $_ := set $d $k (toString $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

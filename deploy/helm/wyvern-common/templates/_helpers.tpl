{{/*
wyvern-common helpers: names, labels and the per-daemon variable names.
Every service chart sets .Values.daemon (auth, lobby, game, world, actor, chat).
*/}}

{{- define "wyvern-common.daemon" -}}
{{- required "values.daemon is required (auth, lobby, game, world, actor, chat)" .Values.daemon -}}
{{- end -}}

{{/* WY_<SVC>_ prefix of the daemon's own variables. */}}
{{- define "wyvern-common.envPrefix" -}}
{{- printf "WY_%s_" (include "wyvern-common.daemon" . | upper) -}}
{{- end -}}

{{- define "wyvern-common.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wyvern-common.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wyvern-common.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wyvern-common.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ include "wyvern-common.daemon" . }}
app.kubernetes.io/part-of: wyvern
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "wyvern-common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wyvern-common.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wyvern-common.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The client port is rendered only for daemons that have one (auth HTTP,
lobby and game WebSocket) and only when enabled.
*/}}
{{- define "wyvern-common.hasClientPort" -}}
{{- if and .Values.ports.client .Values.ports.client.enabled -}}true{{- end -}}
{{- end -}}

{{/*
Grace period check: preStop sleep + drain + Kafka close must fit in
terminationGracePeriodSeconds, or Kubernetes SIGKILLs a daemon mid-drain.
*/}}
{{- define "wyvern-common.checkGrace" -}}
{{- $drainS := div (add .Values.drain.timeoutMs 999) 1000 -}}
{{- $need := add .Values.drain.preStopSleepSeconds $drainS .Values.drain.kafkaCloseSeconds 1 -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $need) -}}
{{- fail (printf "terminationGracePeriodSeconds=%v is shorter than preStop %vs + drain %vs + Kafka close %vs + 1s = %vs" .Values.terminationGracePeriodSeconds .Values.drain.preStopSleepSeconds $drainS .Values.drain.kafkaCloseSeconds $need) -}}
{{- end -}}
{{- end -}}

{{/*
Auth's signing keys: a Secret of <kid>.pem files, always mounted read-only
for the auth daemon (wy-auth requires WY_AUTH_KEYS_DIR and
WY_AUTH_SIGNING_KID and does not start without them).
*/}}
{{- define "wyvern-common.signingKeysOn" -}}
{{- if eq (include "wyvern-common.daemon" .) "auth" -}}
{{- if not (and .Values.signingKeys .Values.signingKeys.existingSecret) -}}
{{- fail "signingKeys.existingSecret is required: wy-auth needs its signing keys (create it with: kubectl create secret generic wyvern-auth-keys --from-file=<kid>.pem=<private key file>)" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when this chart mounts the join-ticket keys: lobby (signs) and game
(verifies), when ticketKeys.existingSecret names a Secret.
*/}}
{{- define "wyvern-common.ticketKeysOn" -}}
{{- $d := include "wyvern-common.daemon" . -}}
{{- if and (or (eq $d "lobby") (eq $d "game")) .Values.ticketKeys .Values.ticketKeys.existingSecret -}}
true
{{- end -}}
{{- end -}}

{{/*
Secret-held variables besides the URLs, as env entries: auth's Steam Web
API key and custom-login server key, each only when its Secret is named.
*/}}
{{- define "wyvern-common.secretEnv" -}}
{{- if eq (include "wyvern-common.daemon" .) "auth" -}}
{{- with .Values.steam }}{{ if .existingSecret }}
- name: WY_AUTH_STEAM_WEB_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretKey }}
{{- end }}{{ end }}
{{- with .Values.customLogin }}{{ if .existingSecret }}
- name: WY_AUTH_CUSTOM_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretKey }}
{{- end }}{{ end }}
{{- end -}}
{{- end -}}

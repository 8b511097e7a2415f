{{/*
The daemon's pods: a Deployment by default, a StatefulSet when
workload.kind=StatefulSet (stable pod names and DNS; see deploy/README.md).
*/}}
{{- define "wyvern-common.workload" -}}
{{- include "wyvern-common.checkGrace" . -}}
{{- $kind := .Values.workload.kind -}}
{{- if not (has $kind (list "Deployment" "StatefulSet")) -}}
{{- fail (printf "workload.kind must be Deployment or StatefulSet, got %q" $kind) -}}
{{- end -}}
apiVersion: apps/v1
kind: {{ $kind }}
metadata:
  name: {{ include "wyvern-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ .Values.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- include "wyvern-common.selectorLabels" . | nindent 6 }}
  {{- if eq $kind "StatefulSet" }}
  serviceName: {{ include "wyvern-common.fullname" . }}-headless
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: {{ .Values.rollingUpdate.maxUnavailable }}
      maxSurge: {{ .Values.rollingUpdate.maxSurge }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "wyvern-common.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/component: {{ include "wyvern-common.daemon" . }}
        app.kubernetes.io/part-of: wyvern
      annotations:
        # A changed ConfigMap rolls the pods: the daemons read WY_* at start only.
        checksum/config: {{ include "wyvern-common.configData" . | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "wyvern-common.serviceAccountName" . }}
      # The daemons never call the Kubernetes API.
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ .Values.securityContext.runAsUser }}
        runAsGroup: {{ .Values.securityContext.runAsGroup }}
        fsGroup: {{ .Values.securityContext.runAsGroup }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ include "wyvern-common.daemon" . }}
          image: {{ include "wyvern-common.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          securityContext:
            allowPrivilegeEscalation: false
            privileged: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          ports:
            {{- if include "wyvern-common.hasClientPort" . }}
            - name: {{ .Values.ports.client.name }}
              containerPort: {{ .Values.ports.client.port }}
              protocol: TCP
            {{- end }}
            - name: grpc
              containerPort: {{ .Values.ports.grpc }}
              protocol: TCP
            - name: ops
              containerPort: {{ .Values.ports.ops }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "wyvern-common.fullname" . }}
          env:
            # Unique per pod: names this instance in logs, envelopes, sessions.
            - name: WY_INSTANCE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- if .Values.postgresql.enabled }}
            - name: WY_PG_URL
              valueFrom:
                secretKeyRef:
                  name: {{ required "postgresql.existingSecret is required: a Secret holding the PostgreSQL URL" .Values.postgresql.existingSecret }}
                  key: {{ .Values.postgresql.secretKey }}
            {{- end }}
            {{- if .Values.redis.enabled }}
            - name: WY_REDIS_URL
              valueFrom:
                secretKeyRef:
                  name: {{ required "redis.existingSecret is required: a Secret holding the Redis URL" .Values.redis.existingSecret }}
                  key: {{ .Values.redis.secretKey }}
            {{- end }}
            {{- if include "wyvern-common.signingKeysOn" . }}
            - name: {{ include "wyvern-common.envPrefix" . }}KEYS_DIR
              value: {{ .Values.signingKeys.mountPath | quote }}
            - name: {{ include "wyvern-common.envPrefix" . }}SIGNING_KID
              value: {{ required "signingKeys.kid is required: the kid (file <kid>.pem in the Secret) that signs new tokens" .Values.signingKeys.kid | quote }}
            {{- end }}
            {{- if include "wyvern-common.ticketKeysOn" . }}
            - name: {{ include "wyvern-common.envPrefix" . }}TICKET_KEYS_DIR
              value: {{ .Values.ticketKeys.mountPath | quote }}
            {{- if eq (include "wyvern-common.daemon" .) "lobby" }}
            - name: WY_LOBBY_TICKET_KID
              value: {{ required "ticketKeys.kid is required: the kid (file <kid>.pem in the Secret) that signs join tickets" .Values.ticketKeys.kid | quote }}
            {{- end }}
            {{- end }}
            {{- with include "wyvern-common.secretEnv" . | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          lifecycle:
            preStop:
              # Keeps serving while Kubernetes removes the pod from Service
              # endpoints (kube-proxy, ingress, mesh see it a moment later);
              # SIGTERM, and with it the drain, comes after this.
              exec:
                command: ["sleep", "{{ .Values.drain.preStopSleepSeconds }}"]
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ .Values.probes.port }}
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ .Values.probes.port }}
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
          readinessProbe:
            {{- if eq .Values.probes.readiness.type "grpc" }}
            grpc:
              port: {{ .Values.ports.grpc }}
              service: ""
            {{- else }}
            httpGet:
              path: /readyz
              port: {{ .Values.probes.port }}
            {{- end }}
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if include "wyvern-common.signingKeysOn" . }}
            - name: signing-keys
              mountPath: {{ .Values.signingKeys.mountPath }}
              readOnly: true
            {{- end }}
            {{- if include "wyvern-common.ticketKeysOn" . }}
            - name: ticket-keys
              mountPath: {{ .Values.ticketKeys.mountPath }}
              readOnly: true
            {{- end }}
      volumes:
        # The root filesystem is read-only; /tmp is the only writable place.
        - name: tmp
          emptyDir:
            medium: Memory
            sizeLimit: 16Mi
        {{- if include "wyvern-common.signingKeysOn" . }}
        - name: signing-keys
          secret:
            secretName: {{ .Values.signingKeys.existingSecret }}
            defaultMode: 0440  # group = fsGroup (the daemon user)
        {{- end }}
        {{- if include "wyvern-common.ticketKeysOn" . }}
        - name: ticket-keys
          secret:
            secretName: {{ .Values.ticketKeys.existingSecret }}
            defaultMode: 0440
        {{- end }}
      {{- if .Values.topologySpread.enabled }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: {{ .Values.topologySpread.topologyKey }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "wyvern-common.selectorLabels" . | nindent 14 }}
      {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* Service: named client (auth/lobby/game only), gRPC and ops ports. */}}
{{- define "wyvern-common.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "wyvern-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  selector:
    {{- include "wyvern-common.selectorLabels" . | nindent 4 }}
  ports:
    {{- include "wyvern-common.servicePorts" . | trim | nindent 4 }}
{{- if eq .Values.workload.kind "StatefulSet" }}
---
# Headless Service of the StatefulSet: stable DNS per pod
# (<pod>.<this>.<namespace>.svc), published before the pod is ready so that
# peers can find a starting instance.
apiVersion: v1
kind: Service
metadata:
  name: {{ include "wyvern-common.fullname" . }}-headless
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "wyvern-common.selectorLabels" . | nindent 4 }}
  ports:
    {{- include "wyvern-common.servicePorts" . | trim | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "wyvern-common.servicePorts" -}}
{{- if include "wyvern-common.hasClientPort" . }}
- name: {{ .Values.ports.client.name }}
  port: {{ .Values.ports.client.port }}
  targetPort: {{ .Values.ports.client.name }}
  protocol: TCP
{{- end }}
- name: grpc
  port: {{ .Values.ports.grpc }}
  targetPort: grpc
  protocol: TCP
  appProtocol: grpc
- name: ops
  port: {{ .Values.ports.ops }}
  targetPort: ops
  protocol: TCP
{{- end -}}

{{/* HorizontalPodAutoscaler (autoscaling/v2) and PodDisruptionBudget. */}}
{{- define "wyvern-common.hpa" -}}
{{- if .Values.autoscaling.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "wyvern-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .Values.workload.kind }}
    name: {{ include "wyvern-common.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
    {{- with .Values.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: {{ .Values.autoscaling.scaleUp.stabilizationWindowSeconds }}
      selectPolicy: Max
      policies:
        - type: Percent
          value: {{ .Values.autoscaling.scaleUp.percent }}
          periodSeconds: 60
        - type: Pods
          value: {{ .Values.autoscaling.scaleUp.pods }}
          periodSeconds: 60
    scaleDown:
      # Gentle: every removed pod drains its connections, so remove few at a
      # time and only after the load stayed low for a while.
      stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDown.stabilizationWindowSeconds }}
      # Pods, not Percent: the HPA rounds a percentage of few pods so that
      # a small Deployment would never shrink.
      policies:
        - type: Pods
          value: {{ .Values.autoscaling.scaleDown.pods }}
          periodSeconds: {{ .Values.autoscaling.scaleDown.periodSeconds }}
{{- end -}}
{{- end -}}

{{- define "wyvern-common.pdb" -}}
{{- if .Values.podDisruptionBudget.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "wyvern-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wyvern-common.labels" . | nindent 4 }}
spec:
  {{- if .Values.podDisruptionBudget.minAvailable }}
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "wyvern-common.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

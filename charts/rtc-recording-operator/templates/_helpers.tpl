{{/* Names. ServiceAccount names are part of the chart's interface (RRSA trust policies name them). */}}

{{- define "rtc-recording-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* 49 characters leave room for the "-receiver" and "-callback-auth" suffixes within 63. */}}
{{- define "rtc-recording-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 49 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rtc-recording-operator.receiverName" -}}
{{- printf "%s-receiver" (include "rtc-recording-operator.fullname" .) }}
{{- end }}

{{/* <fullname>-receiver-metrics, shortened to 63 characters for the longest release names. */}}
{{- define "rtc-recording-operator.receiverMetricsName" -}}
{{- printf "%s-metrics" (include "rtc-recording-operator.receiverName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's ServiceAccount: <release>-rtc-recording-operator. */}}
{{- define "rtc-recording-operator.operatorServiceAccountName" -}}
{{- include "rtc-recording-operator.fullname" . }}
{{- end }}

{{/* The receiver's ServiceAccount: <release>-rtc-recording-operator-receiver. */}}
{{- define "rtc-recording-operator.receiverServiceAccountName" -}}
{{- include "rtc-recording-operator.receiverName" . }}
{{- end }}

{{- define "rtc-recording-operator.ownershipSecretName" -}}
{{- .Values.ownership.keySecret.name | default (printf "%s-ownership" (include "rtc-recording-operator.fullname" .)) }}
{{- end }}

{{- define "rtc-recording-operator.callbackSecretName" -}}
{{- .Values.callbacks.authKeySecret.name | default (printf "%s-callback-auth" (include "rtc-recording-operator.fullname" .)) }}
{{- end }}

{{/* Labels. Pass (dict "ctx" $ "component" "operator"|"receiver"). */}}

{{- define "rtc-recording-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rtc-recording-operator.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rtc-recording-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rtc-recording-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: rtc-recording-operator
{{- end }}

{{- define "rtc-recording-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The callback URL the cloud calls: callbacks.url, else derived from the Ingress host, else empty
(the operator then starts tasks without NotifyUrl).
*/}}
{{- define "rtc-recording-operator.callbackUrl" -}}
{{- if .Values.callbacks.enabled }}
{{- if .Values.callbacks.url }}
{{- .Values.callbacks.url | trimSuffix "/" }}
{{- else if and .Values.receiver.ingress.enabled .Values.receiver.ingress.host }}
{{- printf "%s://%s" (ternary "https" "http" (ne .Values.receiver.ingress.tlsSecretName "")) .Values.receiver.ingress.host }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checks the schema cannot express across values. */}}
{{- define "rtc-recording-operator.validate" -}}
{{- $c := .Values.credentials }}
{{- if and $c.secretName $c.rrsa.enabled }}
{{- fail "credentials: choose credentials.secretName or credentials.rrsa.enabled, not both (the vendor's chain would silently prefer the AccessKey)" }}
{{- end }}
{{- if and $c.rrsa.enabled (or (not $c.rrsa.roleArn) (not $c.rrsa.oidcProviderArn)) }}
{{- fail "credentials.rrsa: roleArn and oidcProviderArn are required when rrsa.enabled" }}
{{- end }}
{{- if and $c.rrsa.vpcEndpoint (not $c.rrsa.stsRegion) }}
{{- fail "credentials.rrsa.vpcEndpoint needs credentials.rrsa.stsRegion (the VPC endpoint is regional)" }}
{{- end }}
{{- if and .Values.receiver.ingress.enabled (not .Values.receiver.ingress.host) }}
{{- fail "receiver.ingress.host is required when receiver.ingress.enabled" }}
{{- end }}
{{- with .Values.settings }}
{{- if not (and (lt (float64 .leaseRetryPeriodSeconds) (float64 .leaseRenewDeadlineSeconds)) (le (float64 .leaseRenewDeadlineSeconds) (subf .leaseDurationSeconds 1))) }}
{{- fail "settings: need leaseRetryPeriodSeconds < leaseRenewDeadlineSeconds <= leaseDurationSeconds - 1 (the active operator must be gone before a standby takes over)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment shared by the operator and the receiver: one configuration, two commands. What
only the operator may hold (cloud credentials, the ownership key) is in operatorEnv. */}}
{{- define "rtc-recording-operator.env" -}}
{{- range $key, $value := .Values.settings }}
{{- if ne (toString $value) "" }}
- name: RTCREC_{{ $key | snakecase | upper }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- with .Values.watchNamespaces }}
- name: RTCREC_NAMESPACES
  value: {{ join "," . | quote }}
{{- end }}
{{- if .Values.callbacks.enabled }}
{{- with include "rtc-recording-operator.callbackUrl" . }}
- name: RTCREC_CALLBACK_URL
  value: {{ . | quote }}
{{- end }}
- name: RTCREC_CALLBACK_AUTH_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "rtc-recording-operator.callbackSecretName" . }}
      key: {{ .Values.callbacks.authKeySecret.key }}
{{- end }}
{{- end }}

{{/* The operator's alone: the receiver makes no cloud call and writes no task id. */}}
{{- define "rtc-recording-operator.operatorEnv" -}}
- name: RTCREC_OWNERSHIP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "rtc-recording-operator.ownershipSecretName" . }}
      key: {{ .Values.ownership.keySecret.key }}
{{- with .Values.credentials.secretName }}
{{- /* Read by the vendor's default credentials chain (alibabacloud-credentials). */}}
- name: ALIBABA_CLOUD_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: accessKeyId}
- name: ALIBABA_CLOUD_ACCESS_KEY_SECRET
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: accessKeySecret}
- name: ALIBABA_CLOUD_SECURITY_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: securityToken, optional: true}
{{- end }}
{{- with .Values.credentials.rrsa }}
{{- if .enabled }}
{{- /* The same variables the ack-pod-identity-webhook injects; the chain exchanges the token via STS AssumeRoleWithOIDC. */}}
- name: ALIBABA_CLOUD_ROLE_ARN
  value: {{ .roleArn | quote }}
- name: ALIBABA_CLOUD_OIDC_PROVIDER_ARN
  value: {{ .oidcProviderArn | quote }}
- name: ALIBABA_CLOUD_OIDC_TOKEN_FILE
  value: /var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token
{{- with .stsRegion }}
- name: ALIBABA_CLOUD_STS_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .vpcEndpoint }}
- name: ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED
  value: "true"
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rtc-recording-operator.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "rtc-recording-operator.operatorVolumeMounts" -}}
{{- if .Values.credentials.rrsa.enabled }}
- name: rrsa-oidc-token
  mountPath: /var/run/secrets/ack.alibabacloud.com/rrsa-tokens
  readOnly: true
{{- end }}
{{- end }}

{{- define "rtc-recording-operator.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "rtc-recording-operator.operatorVolumes" -}}
{{- if .Values.credentials.rrsa.enabled }}
- name: rrsa-oidc-token
  projected:
    sources:
      - serviceAccountToken:
          audience: sts.aliyuncs.com
          expirationSeconds: {{ int .Values.credentials.rrsa.tokenExpirationSeconds }}
          path: token
{{- end }}
{{- end }}

{{/* The operator's pod, as the Deployment (active/standby) and the StatefulSet (sharding) run it. */}}
{{- define "rtc-recording-operator.operatorPodTemplate" -}}
metadata:
  labels:
    {{- include "rtc-recording-operator.labels" (dict "ctx" . "component" "operator") | nindent 4 }}
  {{- with .Values.operator.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "rtc-recording-operator.operatorServiceAccountName" . }}
  # Service links would add RTCREC_*-looking variables for Services named like the release.
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: operator
      image: {{ include "rtc-recording-operator.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: [run]
      env:
        {{- include "rtc-recording-operator.env" . | trim | nindent 8 }}
        # The Lease and this replica's name in it (stable across container restarts in the pod). With
        # sharding the Lease is the sharder's, and the pod's name is its shard's name and own Lease.
        - name: RTCREC_LEASE_NAME
          value: {{ include "rtc-recording-operator.fullname" . | quote }}
        - name: RTCREC_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if .Values.sharding.enabled }}
        - name: RTCREC_SHARDING
          value: "true"
        {{- end }}
        {{- include "rtc-recording-operator.operatorEnv" . | trim | nindent 8 }}
      ports:
        - name: http-metrics
          containerPort: {{ int .Values.settings.metricsPort }}
          protocol: TCP
      # /healthz fails when the watch, the poller or the quota queue is stuck for
      # settings.stuckSeconds, so a restart is the right answer; a standby's fails when it
      # could not read the Lease for that long. No readiness probe: the operator serves no
      # traffic.
      livenessProbe:
        httpGet:
          path: /healthz
          port: http-metrics
        initialDelaySeconds: 15
        periodSeconds: 20
        timeoutSeconds: 10
        failureThreshold: 3
      resources:
        {{- toYaml .Values.operator.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        {{- include "rtc-recording-operator.volumeMounts" . | nindent 8 }}
        {{- include "rtc-recording-operator.operatorVolumeMounts" . | nindent 8 }}
  volumes:
    {{- include "rtc-recording-operator.volumes" . | nindent 4 }}
    {{- include "rtc-recording-operator.operatorVolumes" . | nindent 4 }}
  {{- with .Values.operator.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.operator.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.operator.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

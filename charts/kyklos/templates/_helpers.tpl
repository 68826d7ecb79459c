{{/* Chart name, overridable with nameOverride. */}}
{{- define "kyklos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every resource: the release name, with the chart name unless it is already in it. */}}
{{- define "kyklos.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every object the chart renders. */}}
{{- define "kyklos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kyklos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kyklos
{{- end }}

{{/* Labels that select the operator pods; never change them (Deployment selectors are immutable). */}}
{{- define "kyklos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kyklos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the operator ServiceAccount. */}}
{{- define "kyklos.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kyklos.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the worker ServiceAccount. */}}
{{- define "kyklos.workerServiceAccountName" -}}
{{- default (printf "%s-worker" (include "kyklos.fullname" .)) .Values.worker.serviceAccount.name }}
{{- end }}

{{/* Namespaces where the chart creates the worker ServiceAccount, one per line: workerNamespaces, else watchNamespaces; empty when watching all namespaces without a list. */}}
{{- define "kyklos.workerNamespaces" -}}
{{- range (.Values.workerNamespaces | default .Values.watchNamespaces) | uniq }}
{{ . }}
{{- end }}
{{- end }}

{{/* The worker ServiceAccount name handed to the operator, or empty (each namespace's default). */}}
{{- define "kyklos.workerServiceAccountEnv" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- if include "kyklos.workerNamespaces" . | trim }}
{{- include "kyklos.workerServiceAccountName" . }}
{{- end }}
{{- else }}
{{- .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A container image reference from repository, tag and digest (the digest wins). */}}
{{- define "kyklos.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/* The operator image. */}}
{{- define "kyklos.image" -}}
{{- include "kyklos.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest) }}
{{- end }}

{{/* The worker image: the operator's own unless worker.image overrides a part. */}}
{{- define "kyklos.workerImage" -}}
{{- $repository := default .Values.image.repository .Values.worker.image.repository }}
{{- $tag := .Values.worker.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- $digest := "" }}
{{- if not (or .Values.worker.image.repository .Values.worker.image.tag) }}
{{- $digest = .Values.image.digest }}
{{- end }}
{{- $digest = default $digest .Values.worker.image.digest }}
{{- include "kyklos.imageRef" (dict "repository" $repository "tag" $tag "digest" $digest) }}
{{- end }}

{{/* The artifact store URI handed to the operator (KYKLOS_ARTIFACTS_URI). */}}
{{- define "kyklos.artifactsUri" -}}
{{- if .Values.artifacts.uri }}
{{- .Values.artifacts.uri }}
{{- else if .Values.artifacts.existingClaim }}
{{- printf "pvc://%s" .Values.artifacts.existingClaim }}
{{- else if .Values.artifacts.persistence.enabled }}
{{- printf "pvc://%s" (include "kyklos.artifactsClaimName" .) }}
{{- else }}
{{- fail "artifacts: no artifact store configured; set artifacts.uri, artifacts.existingClaim or artifacts.persistence.enabled=true" }}
{{- end }}
{{- end }}

{{/* Name of the per-namespace artifact claim (the operator creates it where missing). */}}
{{- define "kyklos.artifactsClaimName" -}}
{{- printf "%s-artifacts" (include "kyklos.fullname" .) }}
{{- end }}

{{/* True (non-empty) when kopf peering is used: more than one operator replica. */}}
{{- define "kyklos.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "azureml-attach.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name
(`helm install azureml-attach …` gives `azureml-attach`), else "<release>-<chart>".
*/}}
{{- define "azureml-attach.fullname" -}}
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

{{- define "azureml-attach.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "azureml-attach.selectorLabels" -}}
app.kubernetes.io/name: {{ include "azureml-attach.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "azureml-attach.labels" -}}
helm.sh/chart: {{ include "azureml-attach.chart" . }}
{{ include "azureml-attach.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: azureml-attach
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "azureml-attach.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "azureml-attach.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: the digest wins over the tag; the tag defaults to the appVersion. */}}
{{- define "azureml-attach.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: explicitly, or automatically with more than one replica. */}}
{{- define "azureml-attach.leaderElect" -}}
{{- $le := .Values.controller.leaderElection }}
{{- if eq (toString $le) "auto" }}
{{- if gt (int .Values.replicaCount) 1 }}true{{ else }}false{{ end }}
{{- else }}
{{- toString $le }}
{{- end }}
{{- end }}

{{/* Where the extra CA bundle is mounted, and the name of the mounted file. */}}
{{- define "azureml-attach.extraCAFile" -}}
{{- with .Values.azure.extraCA }}
{{- if .configMap.name }}
{{- printf "/etc/azureml-attach/ca/%s" .configMap.key }}
{{- else if .secret.name }}
{{- printf "/etc/azureml-attach/ca/%s" .secret.key }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fail early, with a sentence, on combinations the schema cannot explain well. */}}
{{- define "azureml-attach.validate" -}}
{{- if and .Values.azure.extraCA.configMap.name .Values.azure.extraCA.secret.name }}
{{- fail "azure.extraCA: set configMap.name or secret.name, not both" }}
{{- end }}
{{- if and (eq .Values.azure.cloud "Custom") (or (not .Values.azure.armEndpoint) (not .Values.azure.authorityHost)) }}
{{- fail "azure.cloud=Custom needs azure.armEndpoint and azure.authorityHost (https URLs)" }}
{{- end }}
{{- if and .Values.workloadIdentity.enabled (not .Values.workloadIdentity.clientId) }}
{{- fail "workloadIdentity.enabled=true needs workloadIdentity.clientId (the managed identity's client ID)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (eq (include "azureml-attach.leaderElect" .) "false") }}
{{- fail "replicaCount > 1 needs leader election: set controller.leaderElection to auto or true" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.metrics.service.enabled) (not .Values.prometheusRule.job) }}
{{- fail "prometheusRule.enabled needs metrics.service.enabled (its Service names the Prometheus job), or prometheusRule.job set to the job that scrapes the operator" }}
{{- end }}
{{- end }}

{{/*
The Prometheus `job` of the operator's targets: prometheus-operator names a ServiceMonitor's
targets after the Service, i.e. this chart's metrics Service. Override with prometheusRule.job
when something else scrapes the operator.
*/}}
{{- define "azureml-attach.metricsJob" -}}
{{- default (printf "%s-metrics" (include "azureml-attach.fullname" .)) .Values.prometheusRule.job }}
{{- end }}

{{/* The label matchers that select this release's operator in every alert expression. */}}
{{- define "azureml-attach.metricsSelector" -}}
job="{{ include "azureml-attach.metricsJob" . }}", namespace="{{ .Release.Namespace }}"
{{- end }}

{{/* Chart name. */}}
{{- define "moontide.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, unless the release name already holds the chart name. */}}
{{- define "moontide.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Standard labels; pass (dict "ctx" $ "component" "operator"). */}}
{{- define "moontide.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{ include "moontide.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: moontide
{{- end -}}

{{/* Selector labels: the stable ones only. */}}
{{- define "moontide.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moontide.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "moontide.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "moontide.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moontide.worker.serviceAccountName" -}}
{{- if .Values.worker.serviceAccount.create -}}
{{- default (printf "%s-worker" (include "moontide.fullname" .)) .Values.worker.serviceAccount.name -}}
{{- else -}}
{{- .Values.worker.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the operator elects a leader through a Lease, else empty. */}}
{{- define "moontide.leaderElection" -}}
{{- if or .Values.operator.leaderElection.enabled (gt (int .Values.operator.replicas) 1) -}}
true
{{- end -}}
{{- end -}}

{{/* The cluster-scoped name of the operator's discovery ClusterRole (and its binding). */}}
{{- define "moontide.discovery.name" -}}
{{- printf "%s-%s-discovery" (include "moontide.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "moontide.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "moontide.worker.image" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.worker.image.repository) (default (default .Chart.AppVersion .Values.image.tag) .Values.worker.image.tag) -}}
{{- end -}}

{{- define "moontide.temporal.devServer.image" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.temporal.devServer.image.repository) (default (default .Chart.AppVersion .Values.image.tag) .Values.temporal.devServer.image.tag) -}}
{{- end -}}

{{/* The namespaces the operator watches (a list), empty when it watches all. */}}
{{- define "moontide.watch.namespaces" -}}
{{- if .Values.watch.allNamespaces -}}
[]
{{- else if .Values.watch.namespaces -}}
{{ toJson .Values.watch.namespaces }}
{{- else -}}
{{ toJson (list .Release.Namespace) }}
{{- end -}}
{{- end -}}

{{/* Temporal frontend for TemporalClients without an address. */}}
{{- define "moontide.temporal.address" -}}
{{- if .Values.temporal.address -}}
{{- .Values.temporal.address -}}
{{- else if .Values.temporal.devServer.enabled -}}
{{- printf "%s-temporal.%s.svc:7233" (include "moontide.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The operator's arguments (its pod's args; the e2e suite installs the chart and runs them in that pod). */}}
{{- define "moontide.operator.args" -}}
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
- operator
{{- if .Values.watch.allNamespaces }}
- --all-namespaces
{{- else }}
{{- range (include "moontide.watch.namespaces" . | fromJsonArray) }}
- --namespace
- {{ . | quote }}
{{- end }}
{{- end }}
- --worker-image
- {{ include "moontide.worker.image" . | quote }}
{{- with .Values.worker.image.pullPolicy }}
- --image-pull-policy
- {{ . | quote }}
{{- end }}
{{- with (include "moontide.worker.serviceAccountName" .) }}
- --worker-service-account
- {{ . | quote }}
{{- if $.Values.worker.serviceAccount.create }}
- --create-worker-service-account
{{- end }}
{{- end }}
{{- with (include "moontide.temporal.address" .) }}
- --temporal-address
- {{ . | quote }}
{{- end }}
- --health-port
- {{ .Values.operator.httpPort | quote }}
- --pod-http-port
- {{ .Values.operator.httpPort | quote }}
- --resync-seconds
- {{ .Values.operator.resyncSeconds | quote }}
- --replay-sample
- {{ .Values.operator.replaySample | quote }}
- --code-gc-seconds
- {{ .Values.operator.codeGcSeconds | quote }}
{{- if include "moontide.leaderElection" . }}
- --leader-election
- --lease-namespace
- {{ .Release.Namespace | quote }}
- --lease-name
- {{ include "moontide.fullname" . | quote }}
- --lease-seconds
- {{ .Values.operator.leaderElection.leaseSeconds | quote }}
{{- end }}
{{- end -}}

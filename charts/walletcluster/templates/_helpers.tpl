{{/* Names and labels of the walletcluster chart. */}}

{{/* The WalletCluster's name: pods are "<name>-<ordinal>" and take their Raft id from it. */}}
{{- define "walletcluster.name" -}}
{{- $name := default .Release.Name .Values.name }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "the WalletCluster name %q (name, or else the release name) must be a lowercase RFC 1123 label starting with a letter" $name) }}
{{- end }}
{{- if gt (len $name) 52 }}
{{- fail (printf "the WalletCluster name %q (name, or else the release name) is longer than 52 characters (a StatefulSet's limit)" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "walletcluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels. The operator labels the objects it owns itself (component "ledger"). */}}
{{- define "walletcluster.labels" -}}
app.kubernetes.io/name: walletcluster
app.kubernetes.io/instance: {{ include "walletcluster.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: ledger
app.kubernetes.io/part-of: walletcluster
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "walletcluster.chart" . }}
{{- end }}

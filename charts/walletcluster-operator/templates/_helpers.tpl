{{/* Names and labels shared by the templates of the walletcluster-operator chart. */}}

{{- define "walletcluster-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or the release name alone when it already contains the chart name. */}}
{{- define "walletcluster-operator.fullname" -}}
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

{{/* Cluster-scoped objects carry the release namespace: two releases may share a name. */}}
{{- define "walletcluster-operator.clusterName" -}}
{{- printf "%s-%s" (include "walletcluster-operator.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "walletcluster-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "walletcluster-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "walletcluster-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "walletcluster-operator.labels" -}}
{{ include "walletcluster-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: walletcluster
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "walletcluster-operator.chart" . }}
{{- end }}

{{- define "walletcluster-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "walletcluster-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the operator runs with kopf peering (several replicas, one active). */}}
{{- define "walletcluster-operator.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "walletcluster-operator.peeringName" -}}
{{- default (include "walletcluster-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches: exactly the calls that kopf and
operator/walletoperator (handlers.py, kube.py, builders.py) make, nothing more.
*/}}
{{- define "walletcluster-operator.namespacedRules" -}}
# kopf: watch WalletClusters; keep its finalizer and progress annotations on them.
- apiGroups: [ledger.walletcluster.io]
  resources: [walletclusters]
  verbs: [get, list, watch, patch]
# The operator's status report (phase, leader, members, conditions).
- apiGroups: [ledger.walletcluster.io]
  resources: [walletclusters/status]
  verbs: [patch]
# WalletBackups: on-demand base backups, taken once each; their status says how it went.
- apiGroups: [ledger.walletcluster.io]
  resources: [walletbackups]
  verbs: [get, list, watch, patch]
- apiGroups: [ledger.walletcluster.io]
  resources: [walletbackups/status]
  verbs: [patch]
# kopf: Kubernetes Events on the WalletCluster (core/v1 events, create only).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# The cluster secret, the CA, the server certificate and the admin key: read back (kept across
# reconciles; the certificate renewed when due) and server-side applied.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
# With spec.tls.issuerRef: the cert-manager Certificate that issues the nodes' certificate.
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [create, patch]
# Owned objects written with server-side apply (patch; create when they do not exist yet).
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [create, patch]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, patch]
# Ledger pods: observed for status and membership; deleted one at a time in a rolling restart.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, delete]
# spec.bootstrap.recovery: the restore init container's last log line (why it is trying again).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}

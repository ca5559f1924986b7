{{/* The release's name, with the chart's unless it already contains it. */}}
{{- define "modelrollout.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelrollout.labels" -}}
app.kubernetes.io/name: modelrollout
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: modelrollout
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the existing ServiceAccount to run as (or set serviceAccount.create: true)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The rules of package.json "pepr.rbac" (the module's declared rights), split by where they apply.
test/integration/helm.test.ts checks that together they are exactly the declared ones.
- watchRules: reading ModelRollouts; Pepr lists and watches them across namespaces even when
  MODELROLLOUT_NAMESPACES limits what it acts on, so these are cluster-wide in both modes.
- namespacedRules: what a rollout does in its namespace (a Role per namespace, or cluster-wide).
- the Lease (leaseRules) lives in the release namespace; namespaces get is the start-up probe.
*/}}
{{- define "modelrollout.watchRules" -}}
- apiGroups: [rollouts.inference.dev]
  resources: [modelrollouts]
  verbs: [get, list, watch]
{{- end -}}

{{- define "modelrollout.namespacedRules" -}}
- apiGroups: [rollouts.inference.dev]
  resources: [modelrollouts]
  verbs: [get, list, watch, patch]
- apiGroups: [rollouts.inference.dev]
  resources: [modelrollouts/status]
  verbs: [get, patch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, patch]
- apiGroups: [inference.networking.x-k8s.io, inference.networking.k8s.io]
  resources: [inferencepools]
  verbs: [get, create, delete]
- apiGroups: [inference.networking.x-k8s.io]
  resources: [inferencemodels]
  verbs: [get, list, create, patch, delete]
- apiGroups: [inference.networking.x-k8s.io, llm-d.ai]
  resources: [inferenceobjectives]
  verbs: [get, list, create, delete]
- apiGroups: [inference.networking.x-k8s.io, llm-d.ai]
  resources: [inferencemodelrewrites]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# spec.adapters.readiness: the Ready pods of the model's InferencePool.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end -}}

{{- define "modelrollout.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, patch]
{{- end -}}

{{- define "modelrollout.clusterRules" -}}
# Gate templates: ClusterAnalysisTemplates are cluster-scoped, and Pepr watches both kinds
# cluster-wide, so these are cluster-wide in both modes (read-only).
- apiGroups: [rollouts.inference.dev]
  resources: [analysistemplates, clusteranalysistemplates]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
# Pepr's stock controller applies its store CRD at start (server-side apply of this one name).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames: [peprstores.pepr.dev]
  verbs: [create, patch]
{{- end -}}

{{- define "modelrollout.pickerLabels" -}}
app.kubernetes.io/name: modelrollout-picker
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .picker.name }}
{{- end -}}

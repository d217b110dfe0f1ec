{{/*
The operator's rules, least privilege (a Role in each watched namespace, or one ClusterRole with
watch.allNamespaces):
- moontide.io: get, list and watch every kind; patch Workflows (Kopf's finalizer and progress
  annotations) and the status of every kind. It never creates, updates or deletes a CR.
- ConfigMaps (bundles, code history, large Lua sources) and Deployments (workers, services):
  get and server-side apply (create + patch). Deletion is left to owner references.
  Deployments are watched too (a worker's Ready follows their status; a deleted one comes back).
- ServiceAccounts: server-side apply (create + patch) of the worker service account, which has no
  permissions and no token (worker.serviceAccount.create); owner references delete it.
- Pods: list (why a worker or service has no available pod: FailedCreate, CrashLoopBackOff ...;
  a ProcessService's restarts and last error); patch (annotate worker pods with a new bundle's hash:
  the kubelet then refreshes their bundle volume at once, and they reload it without a restart).
- Secrets: get (a TemporalClient's apiKeySecretRef/tlsSecretRef, to start Workflows).
  Worker pods get secrets as secretKeyRef/volumes, never through the API.
- Events (core v1): create (Kopf and the reconciler report what happened; neither patches one).
Cluster-wide in both modes ("moontide.operator.discovery.rules"): list and watch
CustomResourceDefinitions, and with given namespaces also Namespaces. Kopf itself observes them (kinds
installed later; which of the given namespaces exist); forbidden, it would retry for ~54 s before
handling anything (the operator then turns Kopf's scanning off instead, see docs/kubernetes.md).
The leader-election Role (rbac.yaml) and the uninstall hook's rules (cleanup-hook.yaml) are separate.
tests/controller/test_helm_chart.py records what the code asks for and checks that these rules allow
all of it and grant nothing else.
*/}}
{{- define "moontide.operator.rules" -}}
- apiGroups: [moontide.io]
  resources: [luafunctions, luaworkflows, luaprocesses, lualibraries, processhosts, processservices, temporalclients, temporalworkers, workflows]
  verbs: [get, list, watch]
- apiGroups: [moontide.io]
  resources: [workflows]
  verbs: [patch]
- apiGroups: [moontide.io]
  resources: [luafunctions/status, luaworkflows/status, luaprocesses/status, lualibraries/status, processhosts/status, processservices/status, temporalclients/status, temporalworkers/status, workflows/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
{{- if .Values.worker.serviceAccount.create }}
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create, patch]
{{- end }}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- define "moontide.operator.discovery.rules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not .Values.watch.allNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end -}}


{{/*
The uninstall hook's rules (cleanup-hook.yaml), in each watched namespace or cluster-wide: delete the
worker and service Deployments the operator made (found by label: list), and take the operator's
finalizer off Workflows (list, patch). Nothing else: CRs, ConfigMaps and Secrets stay.
*/}}
{{- define "moontide.cleanup.rules" -}}
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, delete]
- apiGroups: [moontide.io]
  resources: [workflows]
  verbs: [list, patch]
{{- end -}}

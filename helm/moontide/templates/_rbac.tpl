{{/*
The operator's rules, least privilege:
- moontide.io: watch every kind; patch Workflows (Kopf's finalizer and progress annotations)
  and the status of every kind. It never creates, updates or deletes a CR.
- ConfigMaps (bundles, code history, large Lua sources) and Deployments (workers, services):
  get and server-side apply (create + patch). Deletion is left to owner references.
  Deployments are watched too (replicas in the owner's status; a deleted one comes back).
- Pods: list (a ProcessService's restarts and last error).
- Secrets: get (a TemporalClient's apiKeySecretRef/tlsSecretRef, to start Workflows).
  Worker pods get secrets as secretKeyRef/volumes, never through the API.
- Events: create and patch (Kopf and the reconciler report what happened).
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
  verbs: [get, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

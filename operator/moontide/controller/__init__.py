"""The Kopf operator: entry CRs -> worker and service Deployments, Workflow CRs -> executions.

``handlers`` (Kopf wiring), ``reconciler`` (entry CRs of a namespace ->
conditions, bundles, Deployments), ``conditions`` (status conditions),
``spawning`` (Workflow CRs -> Temporal executions), ``leader`` (Lease
election), ``cleanup`` (what ``helm uninstall`` runs first), ``operator_cmd``
(``moontide operator``). The operator never runs Lua workflows: it checks Lua
syntax and starts executions through ``moontide.Client``.
"""

"""The Kubernetes side: CRDs, manifests, the Kopf operator and the worker/service pod commands.

Data flows one way: custom resources -> ``bundle`` (``RawEntry`` -> ``build_app``)
-> Kubernetes objects (bundle ConfigMaps, Deployments) and Workflow spawns
through a Temporal client. The controller never runs Lua and never imports
lupa or the Temporal worker at import time; ``moontide worker`` (the pods'
command) imports them when it runs.

Modules: ``crds`` (CRDs from the entry schemas), ``manifests`` (app -> CRs),
``bundle`` (CRs -> App, bundle hash), ``objects`` (desired ConfigMaps and
Deployments), ``kube`` (a small Kubernetes API client), ``reconciler`` (entry
CRs of a namespace -> conditions, bundles, Deployments), ``spawning``
(Workflow CRs -> Temporal executions), ``handlers`` (Kopf wiring),
``leader`` (Lease election), ``health`` (/healthz, /readyz, /metrics),
``operator_cmd`` and ``worker_cmd`` (the commands), ``commands`` (CLI).
"""

from ._kinds import API_VERSION, BY_ENTRY_KIND, BY_KIND, ENTRY_RESOURCES, GROUP, RESOURCES, VERSION, WORKFLOW, Resource

__all__ = ["API_VERSION", "BY_ENTRY_KIND", "BY_KIND", "ENTRY_RESOURCES", "GROUP", "RESOURCES", "VERSION", "WORKFLOW",
           "Resource"]

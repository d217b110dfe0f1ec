"""What the operator, the worker/service pods and the tools share about Kubernetes.

Moontide on Kubernetes is three parts that import this package and never
each other: ``moontide.controller`` (the Kopf operator), ``moontide.pod``
(what a worker or service pod runs) and ``moontide.tools`` (CRDs, manifests,
chart docs, generated at build time). Their CLI commands are wired in
``moontide.kubernetes_commands``.

Data flows one way: custom resources -> ``bundle`` (``RawEntry`` -> ``build_app``)
-> Kubernetes objects (``objects``: bundle ConfigMaps, Deployments, the
environment a pod reads) -> pods. Modules: ``kinds`` (the custom resource
kinds, labels, annotations), ``bundle`` (CRs -> App, bundle hash),
``objects`` (desired ConfigMaps and Deployments), ``config`` (the operator's
settings that shape them), ``kube`` (the Kubernetes API client: lightkube,
with the errors callers catch, a cap on requests in flight, watch-cache lists,
and credentials found as Kopf's login finds them), ``health`` (/healthz,
/readyz, /metrics of every pod). Nothing here runs Lua or imports lupa, kopf
or the Temporal worker at import time (``kube`` imports lightkube, which the
``operator`` extra installs).
"""

from .kinds import API_VERSION, BY_ENTRY_KIND, BY_KIND, ENTRY_RESOURCES, GROUP, RESOURCES, VERSION, WORKFLOW, Resource

__all__ = ["API_VERSION", "BY_ENTRY_KIND", "BY_KIND", "ENTRY_RESOURCES", "GROUP", "RESOURCES", "VERSION", "WORKFLOW",
           "Resource"]

"""The custom resource kinds: names, plurals and the entry kind each one carries.

One table (``RESOURCES``) names every kind of group ``moontide.io``; the CRD
generator, the manifests command, the bundle loader and the handlers all read
it. Also the labels and annotations Moontide puts on objects it makes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANNOTATION_ACCEPT_BUNDLE",
    "ANNOTATION_BUNDLE_HASH",
    "ANNOTATION_CONFIG_HASH",
    "ANNOTATION_SOURCE_FILE",
    "API_VERSION",
    "BY_ENTRY_KIND",
    "BY_KIND",
    "BY_PLURAL",
    "CATEGORY",
    "ENTRY_RESOURCES",
    "FIELD_MANAGER",
    "GROUP",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_OWNER",
    "MANAGED_BY",
    "RESOURCES",
    "Resource",
    "VERSION",
    "WORKFLOW",
]

GROUP = "moontide.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
#: ``kubectl get moontide`` lists every Moontide resource.
CATEGORY = "moontide"

#: Server-side apply field manager of the operator.
FIELD_MANAGER = "moontide-operator"
MANAGED_BY = "moontide-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
#: On objects the operator makes: ``<Kind>.<name>`` of the custom resource that owns them.
LABEL_OWNER = "moontide.io/owner"

#: Hash of a bundle: on its ConfigMap; in a ProcessService's pod template (a change rolls its pod); on worker pods,
#: set by the operator when it hands them a new bundle (the kubelet then refreshes their bundle volume).
ANNOTATION_BUNDLE_HASH = "moontide.io/bundle-hash"
#: Worker pod template annotation: hash of what a worker pod cannot reload in place (its TemporalWorker's
#: spec, its TemporalClient); a change rolls the pods, a change of Lua alone does not.
ANNOTATION_CONFIG_HASH = "moontide.io/config-hash"
#: On a TemporalWorker: the bundle hash the user lets roll out although running executions diverge on it.
ANNOTATION_ACCEPT_BUNDLE = "moontide.io/accept-bundle"
#: On generated custom resources: the file the entry's Lua came from (informational).
ANNOTATION_SOURCE_FILE = "moontide.io/source-file"


@dataclass(frozen=True)
class Resource:
    """One custom resource kind of group moontide.io."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    #: The entry kind a CR of this kind holds; None for Workflow (a spawn, not an entry).
    entry_kind: str | None

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


ENTRY_RESOURCES: tuple[Resource, ...] = (
    Resource("LuaFunction", "luafunctions", ("lfn",), "function.lua"),
    Resource("LuaWorkflow", "luaworkflows", ("lwf",), "workflow.lua"),
    Resource("LuaProcess", "luaprocesses", ("lproc",), "process.lua"),
    Resource("LuaLibrary", "lualibraries", ("llib",), "library.lua"),
    Resource("ProcessHost", "processhosts", ("phost",), "process.host"),
    Resource("ProcessService", "processservices", ("psvc",), "process.service"),
    Resource("TemporalClient", "temporalclients", ("tclient",), "temporal.client"),
    Resource("TemporalWorker", "temporalworkers", ("tworker",), "temporal.worker"),
)
#: ``wf`` is Argo Workflows' short name; ``mwf`` does not clash with it.
WORKFLOW = Resource("Workflow", "workflows", ("mwf",), None)
RESOURCES: tuple[Resource, ...] = (*ENTRY_RESOURCES, WORKFLOW)

BY_KIND = {r.kind: r for r in RESOURCES}
BY_PLURAL = {r.plural: r for r in RESOURCES}
BY_ENTRY_KIND = {r.entry_kind: r for r in ENTRY_RESOURCES}

#: Spec fields that exist only in custom resources, never in an entry.
K8S_ONLY_FIELDS = frozenset({"entryId", "sourceFrom", "apiKeySecretRef", "tlsSecretRef", "deployment"})

"""Operator settings, grouped: what the ``moontide operator`` flags (and the Helm values) set."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["OperatorConfig"]


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs and what it puts in the pods it makes."""

    #: Namespaces to watch; empty with ``clusterwide`` False means the operator's own namespace.
    namespaces: tuple[str, ...] = ()
    #: Watch every namespace (needs cluster-wide RBAC).
    clusterwide: bool = False
    #: Image of worker and service pods (the same image as the operator's, usually).
    worker_image: str = "ghcr.io/moontide/moontide:0.1.0"
    #: Pull policy of worker and service pods; empty: Kubernetes' default.
    image_pull_policy: str = ""
    #: Service account of worker and service pods; empty: the namespace's default.
    worker_service_account: str = ""
    #: Make ``worker_service_account`` (no permissions, no token) in each namespace where the operator deploys
    #: a pod that uses it; False: it must exist already.
    create_worker_service_account: bool = False
    #: Temporal frontend for TemporalClients without an address (e.g. the chart's dev server); empty: none.
    temporal_address: str = ""
    #: Port of /healthz, /readyz and /metrics in the pods the operator makes (and of the operator itself).
    http_port: int = 8080
    #: Seconds between full reconciles of every known namespace (besides watch events).
    resync_seconds: float = 60.0
    #: A namespace is reconciled once its entry CRs have been quiet this long (seconds) after a change, so a
    #: burst (``kubectl apply`` of a whole app) makes one bundle and one roll ...
    settle_seconds: float = 0.5
    #: ... but never later than this after the first change of the burst.
    settle_max_seconds: float = 10.0
    #: Seconds between re-checks of a worker or service that is not available yet (pods starting or failing).
    recheck_seconds: float = 2.0
    #: Results larger than this (bytes of JSON) are left out of a Workflow's status.
    result_limit: int = 16 * 1024
    #: Bytes of old Lua code versions kept for in-flight executions (per worker, in a ConfigMap).
    code_history_bytes: int = 900 * 1024
    #: Seconds between asks to Temporal which old code versions open executions still run (the others go).
    code_gc_seconds: float = 300.0
    #: Running executions replayed per changed workflow type before a worker gets new Lua; 0: no check.
    replay_sample: int = 20
    #: Elect one active replica through a Lease (coordination.k8s.io) so two replicas are safe.
    leader_election: bool = False
    #: Namespace and name of the Lease; empty namespace: the pod's namespace (POD_NAMESPACE) or "default".
    lease_namespace: str = ""
    lease_name: str = "moontide-operator"
    #: Lease duration, seconds: a dead leader is replaced this long after its last renewal.
    lease_seconds: float = 15.0
    #: Extra labels on every object the operator makes.
    labels: dict[str, str] = field(default_factory=dict)

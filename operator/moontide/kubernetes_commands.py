"""``moontide`` commands of the Kubernetes side: operator, operator-cleanup, worker, service, manifests, crds.

The CLI core calls ``register(sub)``; each parser sets ``handler=fn`` where
``fn(args)`` returns an exit code or a coroutine of one. Handlers import
their modules lazily, so ``moontide --help`` loads neither kopf nor lupa.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _env_default(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def register(sub: Any) -> None:
    """Add the operator, operator-cleanup, worker, service, manifests and crds commands to ``sub``."""
    from .k8s.config import OperatorConfig

    d = OperatorConfig()
    op = sub.add_parser("operator", help="run the Kubernetes operator (Kopf): entry CRs -> workers, Workflow CRs "
                                         "-> executions")
    scope = op.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="namespace to watch (repeat; default: the operator's own)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    op.add_argument("--worker-image", default=_env_default("MOONTIDE_WORKER_IMAGE", d.worker_image),
                    help="image of worker and service pods (env MOONTIDE_WORKER_IMAGE)")
    op.add_argument("--image-pull-policy", default=d.image_pull_policy, choices=["", "Always", "IfNotPresent", "Never"])
    op.add_argument("--worker-service-account", default=d.worker_service_account, metavar="NAME",
                    help="service account of worker and service pods (default: the namespace's default)")
    op.add_argument("--create-worker-service-account", action="store_true",
                    help="make that service account (no permissions, no token) in each namespace where a worker "
                         "or service pod uses it")
    op.add_argument("--temporal-address", default=_env_default("MOONTIDE_TEMPORAL_ADDRESS"), metavar="HOST:PORT",
                    help="Temporal frontend for TemporalClients without an address (env MOONTIDE_TEMPORAL_ADDRESS)")
    op.add_argument("--pod-http-port", type=int, default=d.http_port, metavar="PORT",
                    help="port of /healthz, /readyz, /metrics in worker and service pods")
    op.add_argument("--health-port", type=int, default=8080, metavar="PORT",
                    help="the operator's own /healthz, /readyz, /metrics (0: none)")
    op.add_argument("--resync-seconds", type=float, default=d.resync_seconds)
    op.add_argument("--settle-seconds", type=float, default=d.settle_seconds,
                    help="reconcile a namespace once its entry CRs were quiet this long after a change (at most "
                         f"{d.settle_max_seconds:.0f} s after the first): applying a whole app rolls the workers once")
    op.add_argument("--replay-sample", type=int, default=d.replay_sample, metavar="N",
                    help="before a worker gets changed Lua, replay this many of the newest running executions per "
                         "changed workflow type that would run it; a divergence holds the change back (0: no check)")
    op.add_argument("--code-gc-seconds", type=float, default=d.code_gc_seconds, metavar="SECONDS",
                    help="how often to ask Temporal which old code versions open executions still run")
    op.add_argument("--leader-election", action="store_true",
                    help="one active replica through a Lease (run two replicas safely)")
    op.add_argument("--lease-namespace", default=d.lease_namespace, metavar="NS")
    op.add_argument("--lease-name", default=d.lease_name, metavar="NAME")
    op.add_argument("--lease-seconds", type=float, default=d.lease_seconds)
    op.set_defaults(handler=_operator)

    cl = sub.add_parser("operator-cleanup", help="before uninstalling: stop the operator, delete the worker and "
                                                 "service Deployments it made, take its finalizer off Workflows")
    where = cl.add_mutually_exclusive_group(required=True)
    where.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="a namespace the operator watched (repeat)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="it watched every namespace")
    cl.add_argument("--operator-deployment", default="", metavar="NAME",
                    help="the operator's Deployment: scaled to 0 first, and its pods waited for")
    cl.add_argument("--operator-namespace", default=_env_default("POD_NAMESPACE"), metavar="NS",
                    help="its namespace, also the Lease's (env POD_NAMESPACE)")
    cl.add_argument("--lease-name", default="", metavar="NAME", help="the leader-election Lease to delete")
    cl.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                    help="how long to wait for the operator's pods to go")
    cl.set_defaults(handler=_cleanup)

    wk = sub.add_parser("worker", help="run a temporal.worker from a bundle directory (what a worker pod runs)")
    wk.add_argument("--bundle", required=True, metavar="DIR", help="the mounted bundle ConfigMap")
    wk.add_argument("--worker", default=None, metavar="ENTRY_ID", help="the temporal.worker entry (env MOONTIDE_WORKER)")
    wk.add_argument("--code-history", default=None, metavar="DIR",
                    help="old Lua code versions (<digest>.json) for executions pinned to them")
    wk.add_argument("--code-store", default=None, metavar="DIR", help="writable code store (default /tmp/moontide/code)")
    wk.add_argument("--http-port", type=int, default=8080, metavar="PORT", help="/healthz /readyz /metrics (0: none)")
    wk.add_argument("--temporal", default=None, metavar="HOST:PORT", help="override MOONTIDE_TEMPORAL_ADDRESS")
    wk.add_argument("--reload-seconds", type=float, default=1.0, help="bundle change poll interval (0: never reload)")
    wk.set_defaults(handler=_worker)

    sv = sub.add_parser("service", help="run a process.service from a bundle directory (what a service pod runs)")
    sv.add_argument("--bundle", required=True, metavar="DIR")
    sv.add_argument("--service", default=None, metavar="ENTRY_ID")
    sv.add_argument("--http-port", type=int, default=8080, metavar="PORT")
    sv.add_argument("--temporal", default=None, metavar="HOST:PORT")
    sv.set_defaults(handler=_service)

    mf = sub.add_parser("manifests", help="print an app's entries as custom resources (kubectl apply -f -)")
    mf.add_argument("app", metavar="APP_DIR")
    mf.add_argument("-n", "--namespace", default=None, help="set metadata.namespace")
    mf.set_defaults(handler=_manifests)

    cr = sub.add_parser("crds", help="print the CustomResourceDefinitions (or --write them into the repository)")
    cr.add_argument("--write", metavar="REPO_ROOT", nargs="?", const=".", default=None,
                    help="rewrite crds/ and helm/moontide/crds/ under REPO_ROOT")
    cr.set_defaults(handler=_crds)


def _operator(args: argparse.Namespace) -> Any:
    from .controller import operator_cmd
    from .k8s.config import OperatorConfig

    if args.create_worker_service_account and not args.worker_service_account:
        print("moontide operator: --create-worker-service-account needs --worker-service-account NAME",
              file=sys.stderr)
        return 2
    cfg = OperatorConfig(
        namespaces=tuple(args.namespace), clusterwide=args.all_namespaces, worker_image=args.worker_image,
        image_pull_policy=args.image_pull_policy, worker_service_account=args.worker_service_account,
        create_worker_service_account=args.create_worker_service_account,
        temporal_address=args.temporal_address, http_port=args.pod_http_port, resync_seconds=args.resync_seconds,
        settle_seconds=args.settle_seconds, replay_sample=args.replay_sample, code_gc_seconds=args.code_gc_seconds,
        leader_election=args.leader_election, lease_namespace=args.lease_namespace, lease_name=args.lease_name,
        lease_seconds=args.lease_seconds)
    return operator_cmd.run(cfg, health_port=args.health_port)


async def _cleanup(args: argparse.Namespace) -> int:
    from .controller import cleanup
    from .k8s import kube

    if (args.operator_deployment or args.lease_name) and not args.operator_namespace:
        print("moontide operator-cleanup: --operator-namespace (or POD_NAMESPACE) is needed", file=sys.stderr)
        return 2
    async with kube.Kube() as client:
        report = await cleanup.cleanup(
            client, namespaces=args.namespace, clusterwide=args.all_namespaces,
            operator_deployment=args.operator_deployment, operator_namespace=args.operator_namespace,
            lease_name=args.lease_name, timeout=args.timeout)
    for line in report.lines():
        print(line)
    return 0


def _worker(args: argparse.Namespace) -> Any:
    from .pod import serve

    return serve.run_worker(bundle_dir=args.bundle, worker_id=args.worker, code_history=args.code_history,
                            code_store=args.code_store, http_port=args.http_port, temporal=args.temporal,
                            reload_seconds=args.reload_seconds)


def _service(args: argparse.Namespace) -> Any:
    from .pod import serve

    return serve.run_service(bundle_dir=args.bundle, service_id=args.service, http_port=args.http_port,
                             temporal=args.temporal)


def _manifests(args: argparse.Namespace) -> int:
    from .tools import manifests

    sys.stdout.write(manifests.dump(manifests.manifests_of_dir(args.app, namespace=args.namespace)))
    return 0


def _crds(args: argparse.Namespace) -> int:
    from .tools import crds

    if args.write is not None:
        for p in crds.write(Path(args.write)):
            print(p, file=sys.stderr)
        return 0
    sys.stdout.write("---\n".join(crds.files().values()))
    return 0

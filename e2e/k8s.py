"""A cluster, the chart installed in it, and Temporal reached from the host (for the e2e suite and benchmarks).

No pytest here: ``benchmarks/k8s_cluster.py`` uses the same pieces. kubectl
and helm are the ones of ``tools.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CHART", "MODES", "Cluster", "Release", "delete_namespaces", "eventually", "install", "pod_ready",
           "temporal_call"]

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "moontide"
MODES = ("namespaced", "all-namespaces")
T = TypeVar("T")


def eventually(check: Callable[[], T | None], *, timeout: float = 60, what: str = "", interval: float = 0.2) -> T:
    """Call ``check`` until it returns something truthy; that value. The timeout guards against a hang."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, KeyError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


def pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or ()
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def temporal_call(address: str, fn: Callable[[Any], Any]) -> Any:
    """Run ``await fn(client)`` with a fresh Temporal client."""
    from temporalio.client import Client

    async def go() -> Any:
        client = await Client.connect(address)
        return await fn(client)

    return asyncio.run(go())


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_bin: str
    helm_bin: str
    #: The testbed's RUNDIR when the cluster is one of testbed.py on this machine (its containerd is reachable).
    rundir: Path | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([self.kubectl_bin, *args], input=input, capture_output=True, text=True, env=self.env(),
                           timeout=timeout)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
        return r

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        r = self.kubectl("get", kind, name, *ns, "-o", "json", check=False)
        if r.returncode != 0:
            if "NotFound" in r.stderr or "not found" in r.stderr:
                return None
            raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
        return dict(json.loads(r.stdout))

    def list(self, kind: str, namespace: str, *selector: str) -> list[dict[str, Any]]:
        sel = ["-l", ",".join(selector)] if selector else []
        return list(json.loads(self.kubectl("get", kind, "-n", namespace, *sel, "-o", "json").stdout)["items"])

    def apply(self, namespace: str, docs: list[dict[str, Any]] | str) -> None:
        # JSON, not YAML: kubectl's YAML 1.1 would read a key like `n` as false
        text = docs if isinstance(docs, str) else json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        self.kubectl("apply", "-n", namespace, "-f", "-", input=text)

    def helm(self, *args: str, timeout: float = 300) -> str:
        r = subprocess.run([self.helm_bin, *args], capture_output=True, text=True, env=self.env(), timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"helm {' '.join(args[:2])} failed: {r.stderr[-3000:]}")
        return r.stdout

    def pod_get(self, namespace: str, pod: str, path: str, port: int = 8080) -> str:
        """GET a pod's HTTP endpoint through the API server's proxy (works wherever kubectl does)."""
        return self.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}",
                            timeout=30).stdout

    def logs(self, namespace: str, pod: str, *args: str) -> str:
        return self.kubectl("logs", "-n", namespace, pod, *args, check=False, timeout=60).stdout

    def events(self, namespace: str, *selector: str) -> list[dict[str, Any]]:
        sel = ["--field-selector", ",".join(selector)] if selector else []
        return list(json.loads(self.kubectl("get", "events", "-n", namespace, *sel, "-o", "json").stdout)["items"])

    def crash(self, namespace: str, pod: str) -> str:
        """Kill a pod's containers at once, as the OOM killer would: no SIGTERM, nothing released.

        On the testbed, SIGKILL through the node's containerd (the kubelet then restarts the container in
        the same pod). On another cluster the node is out of reach: the pod is force-deleted instead
        (the kubelet then sends SIGTERM and, 2 s later, SIGKILL). Returns how it was done.
        """
        if self.rundir is None:
            self.kubectl("delete", "pod", pod, "-n", namespace, "--grace-period=0", "--force", "--wait=false")
            return "force-deleted"
        p = self.get("pods", pod, namespace)
        assert p is not None, f"pod {namespace}/{pod} is gone"
        ctr = ["ctr", "--address", str(self.rundir / "containerd" / "containerd.sock"), "-n", "k8s.io"]
        for cs in p["status"].get("containerStatuses") or ():
            cid = cs.get("containerID", "").removeprefix("containerd://")
            if cid:
                subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", cid], check=True, capture_output=True,
                               timeout=30)
        return "SIGKILL"




@dataclass
class Release:
    """The chart, installed with helm, and where the test apps live."""

    cluster: Cluster
    mode: str
    namespace: str
    #: examples/orders and e2e/apps/signals (the same namespace when namespaced).
    orders_ns: str
    signals_ns: str
    image: str
    values: dict[str, Any]
    name: str = "moontide"
    temporal: str = ""  # host:port of the dev server, reachable from here
    uninstalled: bool = False
    _forward: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def app_namespaces(self) -> list[str]:
        return sorted({self.orders_ns, self.signals_ns})

    @property
    def fullname(self) -> str:
        return self.name if "moontide" in self.name else f"{self.name}-moontide"

    def operator_pods(self) -> list[dict[str, Any]]:
        pods = self.cluster.list("pods", self.namespace, "app.kubernetes.io/component=operator",
                                 f"app.kubernetes.io/instance={self.name}")
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def operator_logs(self, pod: str | None = None, *args: str) -> str:
        return self.cluster.logs(self.namespace, pod or f"deploy/{self.fullname}", *args)

    def leader(self) -> str | None:
        lease = self.cluster.get("leases.coordination.k8s.io", self.fullname, self.namespace) or {}
        return (lease.get("spec") or {}).get("holderIdentity")

    def scale_operator(self, replicas: int) -> None:
        self.cluster.kubectl("scale", "deployment", self.fullname, "-n", self.namespace, f"--replicas={replicas}")
        if replicas == 0:
            eventually(lambda: not self.cluster.list("pods", self.namespace, "app.kubernetes.io/component=operator"),
                       timeout=120, what="the operator pods to be gone")
        else:
            self.wait_operator(replicas)

    def wait_operator(self, replicas: int = 1) -> list[dict[str, Any]]:
        """Wait until the operator Deployment has ``replicas`` ready pods, one of them leading; the pods."""
        self.cluster.kubectl("rollout", "status", "deployment", self.fullname, "-n", self.namespace,
                             "--timeout=240s", timeout=260)

        def settled() -> list[dict[str, Any]] | None:
            pods = self.operator_pods()
            ready = [p for p in pods if pod_ready(p)]
            names = {p["metadata"]["name"] for p in ready}
            return ready if len(pods) == replicas and len(ready) == replicas and self.leader() in names else None

        return eventually(settled, timeout=180, what=f"{replicas} ready operator pod(s), one leading")


    def remove(self) -> None:
        """The apps' namespaces first, while the operator still runs (it removes its Workflow finalizers), then
        the release (unless a test uninstalled it) and its namespace."""
        if self._forward is not None:
            self._forward.kill()
            self._forward.communicate()  # reaped, and its pipe closed (else a ResourceWarning fails the test)
            self._forward = None
        delete_namespaces(self.cluster, [ns for ns in self.app_namespaces if ns != self.namespace])
        if not self.uninstalled:
            self.cluster.kubectl("delete", "workflows.moontide.io", "--all", "-n", self.namespace, "--wait=false",
                                 check=False)
            with contextlib.suppress(Exception):
                self.cluster.helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "120s")
            self.uninstalled = True
        delete_namespaces(self.cluster, [self.namespace])


def _host_reaches(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _port_forward(cluster: Cluster, namespace: str, target: str, port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([cluster.kubectl_bin, "port-forward", "-n", namespace, target, f":{port}",
                             "--address", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cluster.env())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+) ->", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"kubectl port-forward: {line}{proc.communicate()[0][:2000]}")
    return proc, int(m.group(1))


def delete_namespaces(cluster: Cluster, namespaces: list[str]) -> None:
    """Delete namespaces; when a deletion hangs on Workflow finalizers nobody removes, remove them."""
    if not namespaces:
        return
    cluster.kubectl("delete", "namespace", *namespaces, "--wait=false", "--ignore-not-found", check=False)

    def gone() -> bool:
        return all(cluster.get("namespace", ns) is None for ns in namespaces)

    with contextlib.suppress(AssertionError):
        eventually(gone, timeout=90, what="namespaces to be deleted")
        return
    for ns in namespaces:
        r = cluster.kubectl("get", "workflows.moontide.io", "-n", ns, "-o", "name", check=False)
        for name in r.stdout.split():
            cluster.kubectl("patch", name, "-n", ns, "--type", "merge", "-p", '{"metadata":{"finalizers":null}}',
                            check=False)
    with contextlib.suppress(AssertionError):
        eventually(gone, timeout=120, what="namespaces to be deleted")


def install(cluster: Cluster, *, mode: str, prefix: str, image: str, pull_policy: str = "Never",
            values: dict[str, Any] | None = None, name: str = "moontide") -> Release:
    """``helm install`` the chart with its in-cluster Temporal dev server and wait for the operator to lead.

    namespaced: the release watches its own namespace ``prefix``, where the apps go; all-namespaces:
    the release in ``prefix-system``, the apps in ``prefix-orders`` and ``prefix-signals``. On failure
    what was made is removed again.
    """
    repo, tag = image.rsplit(":", 1)
    vals: dict[str, Any] = {"image.repository": repo, "image.tag": tag, "image.pullPolicy": pull_policy,
                            "worker.image.pullPolicy": pull_policy, "temporal.devServer.enabled": True,
                            **(values or {})}
    if mode == "namespaced":
        rel = Release(cluster, mode, prefix, prefix, prefix, image, vals, name)
    elif mode == "all-namespaces":
        vals["watch.allNamespaces"] = True
        rel = Release(cluster, mode, f"{prefix}-system", f"{prefix}-orders", f"{prefix}-signals", image, vals, name)
    else:
        raise ValueError(f"mode {mode!r}: one of {MODES}")
    for ns in sorted({rel.namespace, *rel.app_namespaces}):
        cluster.kubectl("create", "namespace", ns)
    args = ["install", rel.name, str(CHART), "-n", rel.namespace]
    for key, value in vals.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    try:
        cluster.helm(*args)
        rel.wait_operator()
        cluster.kubectl("rollout", "status", "deployment", f"{rel.fullname}-temporal", "-n", rel.namespace,
                        "--timeout=240s", timeout=260)
        rel.temporal, rel._forward = host_address(cluster, rel.namespace, f"{rel.fullname}-temporal", 7233)
    except BaseException:
        rel.remove()
        raise
    return rel


def host_address(cluster: Cluster, namespace: str, service: str, port: int
                 ) -> tuple[str, subprocess.Popen[str] | None]:
    """``host:port`` of a Service from this machine: its ClusterIP when kube-proxy's rules route the node's own
    traffic there (they do on the testbed), else a ``kubectl port-forward`` (returned, to be stopped)."""
    svc = cluster.get("services", service, namespace)
    assert svc is not None, f"no Service {namespace}/{service}"
    ip = svc["spec"]["clusterIP"]
    if _host_reaches(ip, port):
        return f"{ip}:{port}", None
    proc, local = _port_forward(cluster, namespace, f"svc/{service}", port)
    return f"127.0.0.1:{local}", proc

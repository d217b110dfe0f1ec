"""The operator as a process against a real kube-apiserver (the testbed: no kubelet, no RBAC).

What a fake cannot show: Kopf's own daemon and signal handling, server-side apply of owner references,
generations, finalizers and a namespace's deletion. The testbed (``../shared/k8s-testbed``, or
``$MOONTIDE_K8S_TESTBED_SCRIPTS``) is started here on free ports when its binaries are built
(``~/.cache/moontide-k8s-testbed``, or ``$MOONTIDE_TESTBED``); otherwise these tests are skipped.
Pods never run on it, so no worker becomes available: a worker's Ready says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from moontide_testing import free_port, free_port_range
from temporalio import workflow

ROOT = Path(__file__).resolve().parents[2]
MOONTIDE = str(Path(sys.executable).with_name("moontide"))
T = TypeVar("T")


def _tools() -> Any:
    spec = importlib.util.spec_from_file_location("moontide_e2e_tools", ROOT / "e2e" / "tools.py")
    assert spec and spec.loader
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    return tools


def eventually(check: Callable[[], T | None], what: str, *, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.CalledProcessError, KeyError, StopIteration) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout:.0f}s for {what}; last: {last!r}")


@dataclass
class Api:
    kubeconfig: str
    kubectl_bin: str

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return subprocess.run([self.kubectl_bin, *args], input=input, capture_output=True, text=True, check=True,
                              env={**os.environ, "KUBECONFIG": self.kubeconfig}, timeout=60).stdout

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        r = subprocess.run([self.kubectl_bin, "get", kind, name, "-n", ns, "-o", "json"], capture_output=True,
                           text=True, env={**os.environ, "KUBECONFIG": self.kubeconfig}, timeout=60)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def items(self, kind: str, ns: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", kind, "-n", ns, "-o", "json"))["items"])

    def namespace(self) -> str:
        ns = f"t-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", ns)
        return ns


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    scripts = Path(os.environ.get("MOONTIDE_K8S_TESTBED_SCRIPTS") or ROOT.parent / "shared" / "k8s-testbed")
    cache = Path(os.environ.get("MOONTIDE_TESTBED") or Path.home() / ".cache" / "moontide-k8s-testbed")
    if not (scripts / "start.sh").exists() or not (cache / "bin" / "kube-controller-manager").exists():
        pytest.skip(f"no API-server testbed built ({scripts}, {cache}/bin)")
    try:
        kubectl = str(_tools().binaries()["kubectl"])
    except Exception as e:  # tools.ToolsMissing
        pytest.skip(str(e))
    rundir = tmp_path_factory.mktemp("testbed")
    started = subprocess.run(["bash", str(scripts / "start.sh"), str(rundir), str(free_port_range(3))],
                             capture_output=True, text=True, timeout=180)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"the testbed did not start: {started.stderr[-2000:]}")
        a = Api(str(rundir / "kubeconfig"), kubectl)
        a.kubectl("apply", "--server-side", "-f", str(ROOT / "helm" / "moontide" / "crds"))
        a.kubectl("wait", "--for", "condition=established", "--timeout", "60s", "crd",
                  "-l", "app.kubernetes.io/part-of=moontide")
        yield a
    finally:
        subprocess.run(["bash", str(scripts / "stop.sh"), str(rundir)], check=False, timeout=60)


class Operator:
    """``moontide operator`` as a local process (as in its pod), its output in a file."""

    def __init__(self, api: Api, log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [MOONTIDE, "operator", "--health-port", str(self.port), "--worker-image", "moontide:test", *args],
                env={**os.environ, "KUBECONFIG": api.kubeconfig}, stdout=out, stderr=subprocess.STDOUT)

    def readyz(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return str(r.read().decode().strip())
        except OSError:
            return None

    def wait(self, state: str) -> Operator:
        eventually(lambda: self.readyz() == state, f"the operator to be {state} ({self.log})")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[list[Operator]]:
    running: list[Operator] = []
    yield running
    for op in running:
        with contextlib.suppress(Exception):
            op.stop(signal.SIGKILL)


def _operator(api: Api, operators: list[Operator], tmp_path: Path, *args: str) -> Operator:
    op = Operator(api, tmp_path / f"operator-{len(operators)}.log", *args)
    operators.append(op)
    return op


def _ready(cr: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (cr.get("status") or {}).get("conditions") or () if c["type"] == "Ready"), {})


def test_an_app_applied_in_one_go_rolls_the_workers_once(api: Api, operators: list[Operator],
                                                         tmp_path: Path) -> None:
    """examples/orders (11 entry CRs) applied at once: one bundle, one Deployment generation (issue 14).

    The CRs are applied one kubectl call each, a few hundred milliseconds apart, as one ``kubectl apply`` of
    them all reaches a slower API server (on this local one it is too fast to show two rolls reliably).
    Also: the operator made the worker ServiceAccount for the worker, and the worker is not Ready while no
    pod is available (pods never run here)."""
    import yaml

    ns = api.namespace()
    _operator(api, operators, tmp_path, "-n", ns, "--temporal-address", "temporal.invalid:7233",
              "--worker-service-account", "moontide-worker", "--create-worker-service-account",
              "--settle-seconds", "2").wait("running")
    manifests = subprocess.run([MOONTIDE, "manifests", str(ROOT / "examples" / "orders")], capture_output=True,
                               text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    assert len(docs) == 11
    for doc in docs:
        api.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))

    def worker() -> dict[str, Any] | None:
        (w,) = api.items("temporalworkers", ns)
        return w if "11 entries" in _ready(w).get("message", "") else None

    w = eventually(worker, "the worker's bundle of all 11 entries")
    name = w["metadata"]["name"]
    dep = api.get("deployment", name, ns)
    assert dep is not None and dep["metadata"]["generation"] == 1, "the workers rolled more than once"
    ready = _ready(w)
    assert ready["status"] == "False" and ready["reason"] == "Progressing", ready
    assert ready["message"].startswith("0/1 pods available")
    assert w["status"]["availableReplicas"] == 0
    sa = api.get("serviceaccount", "moontide-worker", ns)
    assert sa is not None and sa["automountServiceAccountToken"] is False
    assert [(r["kind"], r["name"]) for r in sa["metadata"]["ownerReferences"]] == [("TemporalWorker", name)]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "moontide-worker"


# -- the Workflow daemon -----------------------------------------------------------------------------------------

@workflow.defn(name="app:quick")
class Quick:
    @workflow.run
    async def run(self, *args: Any) -> str:
        return "done"


@workflow.defn(name="app:forever")
class Forever:
    @workflow.run
    async def run(self, *args: Any) -> str:
        await workflow.wait_condition(lambda: False)
        return "never"


def _cr(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "moontide.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _apply(api: Api, ns: str, items: list[dict[str, Any]]) -> None:
    api.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def test_workflow_daemons_exit_by_themselves(api: Api, operators: list[Operator], tmp_path: Path,
                                             temporal_address: str) -> None:
    """Finished Workflows' daemons return; running ones stop at Kopf's signal: none is cancelled (issue 14)."""
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    ns = api.namespace()
    queue = f"q-{ns}"
    source = "return { main = function(x) return x end }"
    _apply(api, ns, [_cr("TemporalClient", "client", entryId="app:client", address=temporal_address),
                     _cr("TemporalWorker", "worker", entryId="app:worker", client="client", task_queue=queue),
                     _cr("LuaWorkflow", "quick", entryId="app:quick", method="main", source=source),
                     _cr("LuaWorkflow", "forever", entryId="app:forever", method="main", source=source)])
    op = _operator(api, operators, tmp_path, "-n", ns, "--settle-seconds", "0.1").wait("running")
    eventually(lambda: api.get("configmap", "worker-bundle", ns), "the worker's bundle")

    async def run_workflows() -> None:
        client = await Client.connect(temporal_address)
        async with Worker(client, task_queue=queue, workflows=[Quick, Forever],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            _apply(api, ns, [_cr("Workflow", f"quick-{i}", workflow="app:quick", worker="app:worker", input=[i])
                             for i in range(10)]
                   + [_cr("Workflow", f"forever-{i}", workflow="app:forever", worker="app:worker")
                      for i in range(3)])

            def phases() -> dict[str, int] | None:
                got: dict[str, int] = {}
                for w in api.items("workflows.moontide.io", ns):
                    phase = (w.get("status") or {}).get("phase") or "None"
                    got[phase] = got.get(phase, 0) + 1
                return got if got == {"Succeeded": 10, "Running": 3} else None

            await asyncio.to_thread(eventually, phases, "10 Workflows Succeeded and 3 Running")

    asyncio.run(run_workflows())
    assert op.stop() == 0
    log = op.output()
    assert log.count("Daemon 'watch' succeeded") == 13, log[-3000:]  # 10 finished, 3 stopped with the operator
    assert "is cancelled" not in log and "did not exit in time" not in log, log[-3000:]
    assert "Stop-flag is set" in log  # our signal handler stopped Kopf (not Kopf's, which waits 5 s more)


# -- leader election -----------------------------------------------------------------------------------------------

def test_a_stopped_leader_releases_the_lease_and_a_standby_takes_over(api: Api, operators: list[Operator],
                                                                      tmp_path: Path) -> None:
    ns = api.namespace()
    # a Lease of 300 s: the standby can only lead within the wait below if the leader released it
    args = ("-n", ns, "--leader-election", "--lease-namespace", ns, "--lease-name", "op", "--lease-seconds", "300")
    first = _operator(api, operators, tmp_path, *args).wait("leading")
    second = _operator(api, operators, tmp_path, *args).wait("standby")
    assert first.stop() == 0
    lease = api.get("lease", "op", ns)
    assert lease is not None
    assert lease["spec"].get("holderIdentity") != f"{socket.gethostname()}-{first.proc.pid}"  # released
    second.wait("leading")
    third = _operator(api, operators, tmp_path, *args).wait("standby")
    # /readyz says standby before the first attempt on the Lease has failed and been logged
    eventually(lambda: "standing by" in third.output(), "the standby to log that it stands by")
    assert third.stop() == 0  # a standby stops cleanly too (a signal, not killed by it)


# -- uninstall -----------------------------------------------------------------------------------------------------

def test_after_cleanup_nothing_runs_and_the_namespace_deletes(api: Api, operators: list[Operator],
                                                              tmp_path: Path) -> None:
    """The chart's pre-delete hook command on a real API: Deployments gone, finalizers off, then the namespace
    (with its Workflows) is deleted without hanging (issue 14)."""
    ns = api.namespace()
    manifests = subprocess.run([MOONTIDE, "manifests", str(ROOT / "examples" / "orders")], capture_output=True,
                               text=True, check=True).stdout
    api.kubectl("apply", "-n", ns, "-f", "-", input=manifests)
    op = _operator(api, operators, tmp_path, "-n", ns, "--temporal-address", "127.0.0.1:9",
                   "--settle-seconds", "0.1").wait("running")
    (worker,) = api.items("temporalworkers", ns)
    name = worker["metadata"]["name"]
    eventually(lambda: api.get("deployment", name, ns), "the worker Deployment")
    _apply(api, ns, [_cr("Workflow", "order-1", workflow="app.workflows:order_processor",
                         worker="app:temporal_worker", input=[{}])])
    eventually(lambda: "moontide.io/finalizer" in (api.get("workflows.moontide.io", "order-1", ns) or {})
               .get("metadata", {}).get("finalizers", []), "Kopf's finalizer on the Workflow")
    assert op.stop() == 0
    out = subprocess.run([MOONTIDE, "operator-cleanup", "-n", ns], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KUBECONFIG": api.kubeconfig})
    assert out.returncode == 0, out.stderr
    assert f"deleted 1 worker/service Deployments: {ns}/{name}" in out.stdout
    assert api.get("deployment", name, ns) is None
    wf = api.get("workflows.moontide.io", "order-1", ns)
    assert wf is not None and "moontide.io/finalizer" not in wf["metadata"].get("finalizers", [])
    assert len(api.items("moontide", ns)) == 12  # every CR stays
    api.kubectl("delete", "namespace", ns, "--wait=false")
    eventually(lambda: api.get("namespace", ns, "default") is None, "the namespace to be deleted", timeout=120)
